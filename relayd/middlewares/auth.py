"""
The C{basicAuth} middleware: HTTP Basic authentication (RFC 7617) against
htpasswd-style C{user:hash} entries, as Traefik v3 does it
(C{pkg/middlewares/auth}, which checks hashes with the go-http-auth library).

What Traefik does, and so does relayd:

  - Users come from C{usersFile} (one C{user:hash} a line; each line trimmed
    of white space, blank lines and lines starting with C{#} skipped) and then
    from C{users}; a name given twice keeps its last entry, so C{users} wins
    over the file. An entry that is not exactly one C{:} apart, an unreadable
    file or no user at all is a build error of the middleware.
  - The credentials are the first C{Authorization} field: C{Basic} (any case),
    one space, then standard padded base64 of C{user:password}, split at the
    first colon (so passwords may hold colons). Anything else, an unknown user
    or a wrong password is answered C{401} with C{WWW-Authenticate: Basic
    realm="<realm>"} (C{traefik} when the realm is empty), C{Content-Type:
    text/plain} and the body C{401 Unauthorized\\n}; the request is not
    forwarded.
  - For an unknown user a hash is still checked (one of the configured ones),
    so that the time taken does not tell which names exist.
  - Once authenticated, C{headerField} (when set) carries the user name to
    the backend, replacing what the client sent there, and then, with
    C{removeHeader}, the C{Authorization} field is dropped.

Hashes, chosen by prefix as go-http-auth does: C{$2a$}, C{$2b$}, C{$2x$} and
C{$2y$} are bcrypt (the same algorithm for all four, passwords cut at 72
bytes); C{{SHA}} is base64 SHA-1; anything else is read as MD5-crypt
C{$magic$salt$hash} with the magic it names, which covers Apache's C{$apr1$}
and C{$1$}. Other formats (plain text, DES crypt, C{{SSHA}}, SHA-256/512
crypt) never match in Traefik; relayd accepts them too but puts a warning
naming the entry in the middleware's status.

Where relayd differs, by design:

  - bcrypt is slow on purpose, and the reactor must not wait for it: bcrypt
    checks run in the reactor's thread pool (C{bcrypt} releases the GIL), and
    identical checks in flight at the same time share one computation, as
    Traefik's C{singleflight} group does.
  - Successful checks are remembered in a small bounded cache keyed by user,
    hash and a keyed digest of the password (never the password), so a client
    that sends the same credentials on every request costs one check. Traefik
    has no such cache. One checker (with its cache) is shared by every router
    using the middleware, and carried over configuration reloads while the
    users do not change.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import os
import re
import weakref
from typing import Any, Callable

import bcrypt
from twisted.internet import defer, threads
from twisted.internet import reactor as globalReactor
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from relayd.config.middlewares import BasicAuth
from relayd.interfaces import IHTTPHandler
from relayd.middlewares.paths import goTrimSpace
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo

DEFAULT_REALM = "traefik"
UNAUTHORIZED_BODY = b"401 Unauthorized\n"

# How many successful checks a checker remembers.
CACHE_SIZE = 1024

_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2x$", b"$2y$")
_BCRYPT_SHAPE = re.compile(rb"\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
# The most of a password bcrypt uses; Go's implementation ignores the rest.
_BCRYPT_MAX_PASSWORD = 72
_SHA_SHAPE = re.compile(rb"\{SHA\}[A-Za-z0-9+/]{27}=")
_MD5CRYPT_SHAPE = re.compile(rb"\$[^$]*\$[^$]*\$[./0-9A-Za-z]{22}")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Which digest bytes make each group of four output characters.
_MD5CRYPT_GROUPS = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


# Credentials and hashes.


def parseBasicCredentials(value: bytes) -> tuple[bytes, bytes] | None:
    """
    The user name and password of an C{Authorization} field value, or
    C{None} when it is not well-formed Basic credentials (what Go's
    C{Request.BasicAuth} accepts).
    """
    if value[:6].lower() != b"basic ":
        return None
    encoded = value[6:]
    if len(encoded) % 4 or not _BASE64.fullmatch(encoded):
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


def md5Crypt(password: bytes, salt: bytes, magic: bytes) -> bytes:
    """
    The MD5-crypt hash (C{magic + salt + "$" + 22 characters}) of
    C{password}: Poul-Henning Kamp's algorithm, which Apache's C{$apr1$} uses
    with its own magic string. The salt is used as given.
    """
    mixin = hashlib.md5(password + salt + password).digest()
    first = hashlib.md5(password + magic + salt)
    length = len(password)
    while length > 0:
        first.update(mixin[: min(length, 16)])
        length -= 16
    bits = len(password)
    while bits:
        first.update(b"\0" if bits & 1 else password[:1])
        bits >>= 1
    final = first.digest()
    for i in range(1000):
        step = hashlib.md5()
        step.update(password if i & 1 else final)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    out = bytearray()
    for a, b, c in _MD5CRYPT_GROUPS:
        value = (final[a] << 16) | (final[b] << 8) | final[c]
        for _ in range(4):
            out.append(_ITOA64[value & 0x3F])
            value >>= 6
    value = final[11]
    for _ in range(2):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return magic + salt + b"$" + bytes(out)


def _checkSHA(password: bytes, secret: bytes) -> bool:
    expected = base64.b64encode(hashlib.sha1(password).digest())
    return hmac.compare_digest(secret[5:], expected)


def _checkBcrypt(password: bytes, secret: bytes) -> bool:
    if not _BCRYPT_SHAPE.fullmatch(secret):
        return False
    # The four prefixes are one algorithm to Go's bcrypt; give the library
    # the one it knows best.
    try:
        return bool(bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], b"$2b$" + secret[4:]))
    except ValueError:
        return False


def _checkMD5Crypt(password: bytes, secret: bytes) -> bool:
    parts = secret.split(b"$", 3)
    if len(parts) != 4:
        return False
    return hmac.compare_digest(secret, md5Crypt(password, parts[2], b"$" + parts[1] + b"$"))


def checkSecret(password: bytes, secret: bytes) -> bool:
    """
    Whether C{password} matches the htpasswd hash C{secret}, with
    go-http-auth's choice of algorithm by prefix.
    """
    if secret.startswith(b"{SHA}"):
        return _checkSHA(password, secret)
    if secret[:4] in _BCRYPT_PREFIXES:
        return _checkBcrypt(password, secret)
    return _checkMD5Crypt(password, secret)


def hashFormat(secret: bytes) -> str | None:
    """
    The name of the format C{secret} is in (C{"bcrypt"}, C{"sha"} or
    C{"md5crypt"}), or C{None} when no password can ever match it.
    """
    if secret.startswith(b"{SHA}"):
        return "sha" if _SHA_SHAPE.fullmatch(secret) else None
    if secret[:4] in _BCRYPT_PREFIXES:
        usable = _BCRYPT_SHAPE.fullmatch(secret) and 4 <= int(secret[4:6]) <= 31
        return "bcrypt" if usable else None
    return "md5crypt" if _MD5CRYPT_SHAPE.fullmatch(secret) else None


# Users.


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _split(entry: str) -> tuple[bytes, bytes] | None:
    parts = entry.split(":")
    if len(parts) != 2:
        return None
    return _encode(parts[0]), _encode(parts[1])


_UNUSABLE = "not a bcrypt, MD5-crypt ($apr1$, $1$) or {SHA} hash: this user can never log in"


def loadUsers(config: BasicAuth) -> tuple[dict[bytes, bytes], list[str]]:
    """
    The users of C{config} (name to hash, file entries first, then C{users}),
    and warnings for entries whose hash can never match.

    @raise BuildError: for an unreadable C{usersFile}, an entry that is not
        C{user:hash}, or no users at all. Messages name the entry by key
        path or line, never by content.
    """
    users: dict[bytes, bytes] = {}
    warnings: list[str] = []
    path = config.usersFile
    if path:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BuildError(f"basicAuth.usersFile: cannot read {path!r}: {e.strerror}") from None
        for number, raw in enumerate(data.split(b"\n"), 1):
            line = goTrimSpace(raw.decode("utf-8", "surrogateescape"))
            if not line or line.startswith("#"):
                continue
            pair = _split(line)
            if pair is None:
                raise BuildError(f"basicAuth.usersFile: line {number} of {path!r} is not of the form user:hash")
            users[pair[0]] = pair[1]
            if hashFormat(pair[1]) is None:
                warnings.append(f"basicAuth.usersFile: line {number} of {path!r}: {_UNUSABLE}")
    for index, entry in enumerate(config.users):
        pair = _split(entry)
        if pair is None:
            # The configuration model refuses these already.
            raise BuildError(f"basicAuth.users[{index}]: must be of the form user:hash")
        users[pair[0]] = pair[1]
        if hashFormat(pair[1]) is None:
            warnings.append(f"basicAuth.users[{index}]: {_UNUSABLE}")
    if not users:
        raise BuildError(f"basicAuth.usersFile: no users found in {path!r}")
    return users, warnings


# Checking.

Runner = Callable[..., "defer.Deferred[bool]"]


class Checker:
    """
    Checks passwords against one set of users: bcrypt through C{runInThread},
    the cheap formats at once; remembers the last L{CACHE_SIZE} successes and
    joins identical checks already running.
    """

    def __init__(self, users: dict[bytes, bytes], runInThread: Runner | None, cacheSize: int = CACHE_SIZE) -> None:
        self.users = users
        self.runInThread = runInThread
        self.cacheSize = cacheSize
        # Checked for unknown users, so that they cost what known ones do.
        self.decoy = next((secret for secret in users.values() if secret), b"")
        self._key = os.urandom(32)
        self._cache: collections.OrderedDict[tuple[bytes, bytes, bytes], None] = collections.OrderedDict()
        self._running: dict[tuple[bytes | None, bytes, bytes], list[defer.Deferred[bool]]] = {}

    def check(self, user: bytes, password: bytes) -> bool | defer.Deferred[bool]:
        """
        Whether C{user} may log in with C{password}: a bool when known at
        once, else a Deferred firing with one.
        """
        secret = self.users.get(user, b"")
        digest = hmac.new(self._key, password, hashlib.sha256).digest()
        if secret:
            key = (user, secret, digest)
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
            result = self._run(password, secret, (user, secret, digest))
        else:
            result = self._run(password, self.decoy, (None, self.decoy, digest))
            if isinstance(result, bool):
                return False
            return result.addCallback(lambda _: False)
        if isinstance(result, bool):
            if result:
                self._remember(key)
            return result

        def remember(matched: bool) -> bool:
            if matched:
                self._remember(key)
            return matched

        return result.addCallback(remember)

    def _remember(self, key: tuple[bytes, bytes, bytes]) -> None:
        cache = self._cache
        cache[key] = None
        cache.move_to_end(key)
        while len(cache) > self.cacheSize:
            cache.popitem(last=False)

    def _run(
        self, password: bytes, secret: bytes, key: tuple[bytes | None, bytes, bytes]
    ) -> bool | defer.Deferred[bool]:
        if self.runInThread is None or not secret.startswith(_BCRYPT_PREFIXES):
            return checkSecret(password, secret)
        waiting = self._running.get(key)
        mine: defer.Deferred[bool] = defer.Deferred()
        if waiting is not None:
            waiting.append(mine)
            return mine
        waiting = self._running[key] = [mine]

        def done(result: bool | Failure) -> None:
            del self._running[key]
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

        self.runInThread(checkSecret, password, secret).addBoth(done)
        return mine


def _threadRunner(reactor: Any) -> Runner | None:
    if not IReactorThreads.providedBy(reactor):
        return None

    def run(f: Callable[..., bool], *args: Any) -> defer.Deferred[bool]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run


# The handler.


@implementer(IHTTPHandler)
class BasicAuthHandler:
    """
    Lets requests with valid Basic credentials through to C{next}; answers
    the others 401.
    """

    _log = Logger()

    def __init__(
        self, next: Any, name: str, checker: Checker, realm: str, headerField: str, removeHeader: bool
    ) -> None:
        self.next = next
        self.name = name
        self.checker = checker
        self.realm = realm or DEFAULT_REALM
        self.challenge = b'Basic realm="' + _encode(self.realm) + b'"'
        self.headerField = headerField.encode("latin-1")
        self.removeHeader = removeHeader

    def handle(self, request: Any) -> None:
        values = request.requestHeaders.getRawHeaders(b"authorization")
        credentials = parseBasicCredentials(values[0]) if values else None
        user = credentials[0] if credentials is not None else b""
        context = request.relayd
        if hasattr(context, "clientUsername"):
            context.clientUsername = user.decode("utf-8", "replace")
        if credentials is None:
            self._refuse(request)
            return
        result = self.checker.check(user, credentials[1])
        if isinstance(result, bool):
            self._decided(request, user, result)
            return
        result.addCallbacks(self._resume, self._checkFailed, callbackArgs=(request, user), errbackArgs=(request,))

    def _decided(self, request: Any, user: bytes, authenticated: bool) -> None:
        if not authenticated:
            self._refuse(request)
            return
        headers = request.requestHeaders
        if self.headerField:
            headers.setRawHeaders(self.headerField, [user])
        if self.removeHeader:
            headers.removeHeader(b"authorization")
        self.next.handle(request)

    def _resume(self, authenticated: bool, request: Any, user: bytes) -> None:
        if request.finished or request._disconnected:
            return
        try:
            self._decided(request, user, authenticated)
        except Exception:
            self._log.failure(
                "handler after basicAuth failed (middleware={middleware}, router={router})",
                middleware=self.name,
                router=getattr(request.relayd, "router", ""),
            )
            if request.startedWriting:
                request.abort()
            else:
                plainResponse(request, 500)

    def _checkFailed(self, reason: Failure, request: Any) -> None:
        # Should not happen (checks return False on bad hashes); fail closed.
        self._log.failure(
            "basicAuth password check failed (middleware={middleware})", reason, middleware=self.name
        )
        self._refuse(request)

    def _refuse(self, request: Any) -> None:
        self._log.debug(
            "basicAuth: authentication failed (middleware={middleware}, router={router})",
            middleware=self.name,
            router=getattr(request.relayd, "router", ""),
        )
        if request.startedWriting or request.finished or request._disconnected:
            return
        request.setResponseCode(401)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [b"text/plain"])
        headers.setRawHeaders(b"www-authenticate", [self.challenge])
        headers.setRawHeaders(b"content-length", [b"%d" % len(UNAUTHORIZED_BODY)])
        if request.method != b"HEAD":
            request.write(UNAUTHORIZED_BODY)
        request.finish()


# Checkers by middleware name, shared by the routers using a middleware and
# kept across generations while a runtime holding one is alive.
_SHARED_KEY = "basicAuthCheckers"


def _checker(context: BuildContext | None, name: str, users: dict[bytes, bytes], reactor: Any) -> Checker:
    checkers: Any = None
    if context is not None:
        checkers = context.shared.get(_SHARED_KEY)
        if checkers is None:
            checkers = context.shared[_SHARED_KEY] = weakref.WeakValueDictionary()
        existing = checkers.get(name)
        if existing is not None and existing.users == users:
            return existing  # type: ignore[no-any-return]
    checker = Checker(users, _threadRunner(reactor))
    if checkers is not None:
        checkers[name] = checker
    return checker


def buildBasicAuth(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    Wrap C{next} in the basicAuth middleware described by C{info}.

    @raise BuildError: if the users cannot be loaded (see L{loadUsers}).
    """
    config: BasicAuth = info.config.config()
    users, warnings = loadUsers(config)
    for warning in warnings:
        if warning not in info.errors:
            info.warn(warning)
    reactor = context.reactor if context is not None and context.reactor is not None else globalReactor
    checker = _checker(context, info.name, users, reactor)
    return BasicAuthHandler(next, info.name, checker, config.realm, config.headerField, config.removeHeader)
