"""
Tests for L{relayd.middlewares.auth}: the basicAuth middleware, its hash
formats (checked against vectors made by independent tools), the users file,
the 401 answer, the headers it changes, bcrypt off the reactor thread with its
cache, build errors, and the whole path through a real entrypoint.
"""

from __future__ import annotations

import base64
import os
import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from relayd.config.dynamic import decodeDynamic
from relayd.config.middlewares import BasicAuth, HTTPMiddleware
from relayd.config.schema import decode
from relayd.entrypoints import EntryPointService, RequestContext
from relayd.interfaces import IHTTPHandler
from relayd.middlewares import auth, buildMiddleware
from relayd.middlewares.auth import (
    CACHE_SIZE,
    DEFAULT_REALM,
    UNAUTHORIZED_BODY,
    BasicAuthHandler,
    Checker,
    checkSecret,
    hashFormat,
    loadUsers,
    md5Crypt,
    parseBasicCredentials,
)
from relayd.providers.base import ProviderUpdate
from relayd.runtime.build import BuildError, ObjectInfo
from relayd.watcher import Watcher
from tests.helpers import ROOT, memoryRequest, startBackend, tempdir
from tests.test_entrypoints import makeStatic, rawRequest

# Vectors, each made once by a tool independent of relayd and of the bcrypt
# package, and kept here so the tests need none of those tools:
#   htpasswd (apache2-utils 2.4): htpasswd -nbB -C 4, -nbm, -nbs, -nbd, -nbp,
#     -nb2, -nb5 USER PASSWORD
#   openssl 3: openssl passwd -apr1 / -1 / -5 / -6 -salt SALT PASSWORD
#   the system crypt(3) (libxcrypt), for bcrypt $2a$ and $2b$ with set salts
BCRYPT_2Y = (b"pa:ss w0rd", b"$2y$04$cwNnNLE6FUsuKap0RwmYgOpASWfWOxGmre2gwHIrp1ElvD2FEU9KO")  # htpasswd -B
BCRYPT_2Y_UTF8 = ("grüße".encode(), b"$2y$04$6VxGH2gnh/TN25uQPGTR0eMlJazY.S5foxe7E/wdmp.4e7CMIeANu")  # htpasswd -B
BCRYPT_2A = (b"two-a:vector", b"$2a$04$abcdefghijklmnopqrstuuky92BL6fYStqkGkEfZPrunV6LG3ZzWK")  # crypt(3)
BCRYPT_2B = (b"two-b:vector", b"$2b$04$ABCDEFGHIJKLMNOPQRSTUusQHj4wfJLCy7ZawtoJX/0Hy.hw44ElC")  # crypt(3)
# crypt(3) gives this same hash for 72 and for 80 times "L": bcrypt reads 72 bytes.
BCRYPT_72 = (b"L" * 72, b"$2b$04$0123456789ABCDEFGHIJKunMMDD3oL/WY7f/nLyCuvOvv5NGdftBK")
APR1 = (b"hunter2", b"$apr1$ed2PmfY5$KhNX09wJ.CkZXarE7czEQ/")  # htpasswd -m
APR1_EMPTY = (b"", b"$apr1$RgsMdin2$fU3K2jpvB1Vaf1rEFGLpZ/")  # htpasswd -m
APR1_LONG = (b"correct horse battery staple:42", b"$apr1$o78QTb7m$u3UrAYbMzbMpuj2nu1y7l.")  # htpasswd -m
APR1_OPENSSL = (b"open:sesame", b"$apr1$Zx9.aB/c$qwx8IuNgRTR4ipP97wW6q0")  # openssl passwd -apr1
MD5_CRYPT = (b"md5crypt", b"$1$q1w2e3r4$MaPUwn9jNZ7pUvr3RLr7h/")  # openssl passwd -1
SHA1 = (b"sha:one", b"{SHA}p/lqFk0g3VJGqeiTaGOWSUsvAHU=")  # htpasswd -s
UNSUPPORTED = (
    (b"descrypt", b"AQrT0YGdbsbEI"),  # htpasswd -d
    (b"plain", b"plain"),  # htpasswd -p
    (b"sha256", b"$5$abcdefgh$cmpuVrJ04y4/hDFF6kVxl85TO3KE63qJ7VmJZnt7GX3"),  # openssl passwd -5
    (
        b"sha512",
        b"$6$abcdefgh$vS1kC3MWo4BCfn689ekEU6AoNAAoAgwBPliw.l2wbweinKWcAAJNlukpQD9Ojcn17uZkHgurW40Wd2AKw14sD0",
    ),  # openssl passwd -6
    (b"y", b"$5$UB/D/2bLZx9RRjxN$gc7wxIyQ5G4pxAsPidAJ4jJg0ALA4MzlLm5w8qsovi8"),  # htpasswd -2
)

SUPPORTED = (BCRYPT_2Y, BCRYPT_2Y_UTF8, BCRYPT_2A, BCRYPT_2B, BCRYPT_72, APR1, APR1_EMPTY, APR1_LONG, APR1_OPENSSL, MD5_CRYPT, SHA1)


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


def basicAuthConfig(**raw: Any) -> HTTPMiddleware:
    middleware, _ = decode(HTTPMiddleware, {"basicAuth": raw})
    return middleware


class Backend:
    """
    A next handler that records what it got and answers 200.
    """

    def __init__(self) -> None:
        self.seen: list[dict[bytes, list[bytes]]] = []

    def handle(self, request: Any) -> None:
        self.seen.append({name: list(values) for name, values in request.requestHeaders.lowerItems()})
        request.setResponseCode(200)
        request.responseHeaders.setRawHeaders(b"content-length", [b"2"])
        request.write(b"ok")
        request.finish()


class FakeThreads:
    """
    A stand-in for the thread pool: records the calls and lets the test fire
    each one's Deferred.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], defer.Deferred[bool]]] = []

    def __call__(self, f: Any, *args: Any) -> defer.Deferred[bool]:
        d: defer.Deferred[bool] = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def runAll(self) -> None:
        calls, self.calls = self.calls, []
        for f, args, d in calls:
            d.callback(f(*args))


class _Context:
    """
    The part of a build context the builder reads: a reactor without threads
    (so checks run inline) and the shared dict.
    """

    def __init__(self) -> None:
        self.reactor = Clock()
        self.shared: dict[str, Any] = {}


def build(raw: dict[str, Any], next: Any = None, context: Any = None, name: str = "auth@file") -> tuple[Any, ObjectInfo]:
    info = ObjectInfo(name=name, kind="basicAuth", config=basicAuthConfig(**raw))
    handler = buildMiddleware(context or _Context(), info, next if next is not None else Backend(), ())
    return handler, info


def makeRequest(method: bytes = b"GET", headers: list[tuple[str, str]] | None = None) -> Any:
    request = memoryRequest(method, b"/private", [(b"host", b"example.org")] + [(n.encode(), v.encode()) for n, v in headers or []])
    request.relayd = RequestContext(
        entryPoint="web",
        runtime=None,  # type: ignore[arg-type]
        clientIP="192.0.2.1",
        localPort=80,
        forwardPath="/private",
        rawQuery="",
        trustForwarded=False,
    )
    return request


def response(request: Any) -> tuple[int, dict[str, list[str]], bytes]:
    """
    The status, headers (lower-case names, Date left out) and body that
    C{request} wrote.
    """
    data = request.testTransport.written.getvalue()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.lower(), []).append(value.strip())
    headers.pop("date", None)
    return int(lines[0].split(" ")[1]), headers, body


def usersFile(testCase: Any, content: bytes) -> str:
    path = os.path.join(tempdir(testCase), "htpasswd")
    with open(path, "wb") as f:
        f.write(content)
    return path


class HashTests(SynchronousTestCase):
    def test_supportedVectors(self) -> None:
        """
        Every vector made by htpasswd, openssl or crypt(3) in a supported
        format matches its password and not a changed one.
        """
        for password, secret in SUPPORTED:
            self.assertTrue(checkSecret(password, secret), secret)
            if len(password) < 72:
                self.assertFalse(checkSecret(password + b"!", secret), secret)
            self.assertFalse(checkSecret(b"x" + password, secret), secret)

    def test_formatNames(self) -> None:
        """
        The supported vectors are named bcrypt, md5crypt or sha.
        """
        self.assertEqual(
            [hashFormat(secret) for _, secret in SUPPORTED],
            ["bcrypt"] * 5 + ["md5crypt"] * 5 + ["sha"],
        )

    def test_bcryptPrefixesAreOneAlgorithm(self) -> None:
        """
        $2a$, $2b$, $2x$ and $2y$ in front of the same salt and digest all
        match, as Go's bcrypt reads them.
        """
        password, secret = BCRYPT_2A
        for prefix in (b"$2a$", b"$2b$", b"$2x$", b"$2y$"):
            self.assertTrue(checkSecret(password, prefix + secret[4:]), prefix)

    def test_bcryptUsesSeventyTwoBytes(self) -> None:
        """
        A bcrypt password longer than 72 bytes is checked on its first 72,
        where the bcrypt package alone would refuse it.
        """
        password, secret = BCRYPT_72
        self.assertTrue(checkSecret(password, secret))
        self.assertTrue(checkSecret(password + b"LLLLLLLL", secret))
        self.assertFalse(checkSecret(password[:71], secret))

    def test_malformedBcrypt(self) -> None:
        """
        Truncated, padded or out-of-range bcrypt hashes never match and
        never raise.
        """
        password, secret = BCRYPT_2B
        for bad in (secret[:-1], secret + b" ", secret[:4] + b"03" + secret[6:], secret[:4] + b"99" + secret[6:], b"$2b$", b"$2y$xx$"):
            self.assertFalse(checkSecret(password, bad), bad)
            self.assertIsNone(hashFormat(bad), bad)

    def test_md5Crypt(self) -> None:
        """
        L{md5Crypt} reproduces Apache's and openssl's MD5-crypt strings.
        """
        self.assertEqual(md5Crypt(b"hunter2", b"ed2PmfY5", b"$apr1$"), APR1[1])
        self.assertEqual(md5Crypt(b"md5crypt", b"q1w2e3r4", b"$1$"), MD5_CRYPT[1])
        self.assertEqual(md5Crypt(b"open:sesame", b"Zx9.aB/c", b"$apr1$"), APR1_OPENSSL[1])

    def test_unsupportedFormats(self) -> None:
        """
        DES crypt, plain text, SHA-crypt and {SSHA} never match (not even a
        plain-text entry with its own text), as with Traefik, and are named
        unusable.
        """
        for password, secret in UNSUPPORTED + ((b"", b""), (b"x", b"{SSHA}aGVsbG8=")):
            self.assertFalse(checkSecret(password, secret), secret)
            self.assertIsNone(hashFormat(secret), secret)

    def test_shaNeedsTheWholeDigest(self) -> None:
        """
        A {SHA} entry matches only its full base64 digest.
        """
        password, secret = SHA1
        self.assertFalse(checkSecret(password, secret[:-1]))
        self.assertFalse(checkSecret(password, secret + b"="))


class CredentialsTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        Go's C{Request.BasicAuth} rules: any case of "Basic", one space,
        padded standard base64, split at the first colon.
        """
        table = [
            (b"Basic YTpi", (b"a", b"b")),
            (b"bAsIc YTpi", (b"a", b"b")),
            (b"BASIC YTpiOmM=", (b"a", b"b:c")),
            (b"Basic OmI=", (b"", b"b")),
            (b"Basic YTo=", (b"a", b"")),
            (b"Basic Og==", (b"", b"")),
            (b"Basic YWI=", None),  # no colon
            (b"Basic ", None),
            (b"Basic", None),
            (b"", None),
            (b"Basic  YTpi", None),  # two spaces
            (b"Basic YTpi ", None),
            (b"Basic\tYTpi", None),
            (b"Bearer YTpi", None),
            (b"Basic YTo", None),  # unpadded
            (b"Basic YTo=YTo=", None),
            (b"Basic YT_i", None),  # URL-safe alphabet
            (b"Basic Y===", None),
            (b"Basic ====", None),
            (b"Basic \xff\xfe", None),
        ]
        for value, expected in table:
            self.assertEqual(parseBasicCredentials(value), expected, value)

    @given(st.binary().filter(lambda b: b":" not in b), st.binary())
    def test_roundTrip(self, user: bytes, password: bytes) -> None:
        """
        Any user name without a colon and any password come back from their
        encoding.
        """
        value = b"Basic " + base64.b64encode(user + b":" + password)
        self.assertEqual(parseBasicCredentials(value), (user, password))

    @given(st.binary())
    def test_neverRaises(self, value: bytes) -> None:
        """
        Arbitrary header bytes give credentials or None, never an exception.
        """
        result = parseBasicCredentials(b"Basic " + value)
        self.assertIn(type(result), (tuple, type(None)))


class UsersTests(SynchronousTestCase):
    def test_file(self) -> None:
        """
        File lines are trimmed; blank lines and # comments are skipped; CRLF
        files work.
        """
        path = usersFile(self, b"# users\r\n\r\n  bob:" + APR1[1] + b"  \r\n\t\ncarol:" + SHA1[1] + b"\r\n   # indented comment\n")
        users, warnings = loadUsers(BasicAuth(usersFile=path))
        self.assertEqual(users, {b"bob": APR1[1], b"carol": SHA1[1]})
        self.assertEqual(warnings, [])

    def test_usersWinOverFile(self) -> None:
        """
        A user in both the file and C{users} gets the C{users} entry; the
        file's other users stay.
        """
        path = usersFile(self, b"bob:" + APR1[1] + b"\ncarol:" + SHA1[1] + b"\n")
        users, _ = loadUsers(BasicAuth(users=("carol:" + MD5_CRYPT[1].decode(),), usersFile=path))
        self.assertEqual(users, {b"bob": APR1[1], b"carol": MD5_CRYPT[1]})

    def test_laterFileLineWins(self) -> None:
        """
        A name repeated in the file keeps its last line.
        """
        path = usersFile(self, b"bob:" + APR1[1] + b"\nbob:" + SHA1[1] + b"\n")
        self.assertEqual(loadUsers(BasicAuth(usersFile=path))[0], {b"bob": SHA1[1]})

    def test_malformedLine(self) -> None:
        """
        A file line that is not user:hash is a build error naming the key,
        the file and the line, without the line's content.
        """
        path = usersFile(self, b"bob:" + APR1[1] + b"\n\nsecret-without-colon\n")
        error = self.assertRaises(BuildError, loadUsers, BasicAuth(usersFile=path))
        self.assertEqual(str(error), f"basicAuth.usersFile: line 3 of {path!r} is not of the form user:hash")
        path = usersFile(self, b"a:b:c\n")
        error = self.assertRaises(BuildError, loadUsers, BasicAuth(usersFile=path))
        self.assertNotIn("a:b:c", str(error))

    def test_unreadableFile(self) -> None:
        """
        A missing file or a directory is a build error naming the key and
        the path.
        """
        missing = os.path.join(tempdir(self), "nope")
        error = self.assertRaises(BuildError, loadUsers, BasicAuth(usersFile=missing))
        self.assertEqual(str(error), f"basicAuth.usersFile: cannot read {missing!r}: No such file or directory")
        directory = tempdir(self)
        error = self.assertRaises(BuildError, loadUsers, BasicAuth(usersFile=directory))
        self.assertIn(f"basicAuth.usersFile: cannot read {directory!r}", str(error))

    def test_noUsers(self) -> None:
        """
        A file with only comments and no C{users} is a build error.
        """
        path = usersFile(self, b"# nobody yet\n\n")
        error = self.assertRaises(BuildError, loadUsers, BasicAuth(usersFile=path))
        self.assertEqual(str(error), f"basicAuth.usersFile: no users found in {path!r}")

    def test_unusableHashesWarn(self) -> None:
        """
        Entries whose hash can never match load (as in Traefik) with a
        warning naming them by key path or line, not by content.
        """
        path = usersFile(self, b"ok:" + APR1[1] + b"\nplain:plain\n")
        users, warnings = loadUsers(BasicAuth(users=("a:" + SHA1[1].decode(), "b:" + UNSUPPORTED[2][1].decode()), usersFile=path))
        self.assertEqual(len(users), 4)
        self.assertEqual(
            warnings,
            [
                f"basicAuth.usersFile: line 2 of {path!r}: not a bcrypt, MD5-crypt ($apr1$, $1$) or {{SHA}} hash: "
                "this user can never log in",
                "basicAuth.users[1]: not a bcrypt, MD5-crypt ($apr1$, $1$) or {SHA} hash: this user can never log in",
            ],
        )

    def test_configRefusesMalformedUsers(self) -> None:
        """
        A C{users} entry with no colon or two is refused by the
        configuration model, with its key path.
        """
        from relayd.config.errors import ConfigError

        for entry in ("nocolon", "a:b:c"):
            error = self.assertRaises(ConfigError, basicAuthConfig, users=["ok:" + APR1[1].decode(), entry])
            self.assertIn("basicAuth.users[1]", str(error))
            self.assertNotIn(entry, str(error))


class HandlerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.backend = Backend()
        self.handler, self.info = build(
            {"users": ["alice:" + APR1_OPENSSL[1].decode(), "carol:" + SHA1[1].decode(), "bob:" + BCRYPT_2Y[1].decode()]},
            self.backend,
        )

    def serve(self, handler: Any = None, method: bytes = b"GET", headers: list[tuple[str, str]] | None = None) -> tuple[Any, tuple[int, dict[str, list[str]], bytes]]:
        request = makeRequest(method, headers)
        (handler or self.handler).handle(request)
        return request, response(request)

    def assertUnauthorized(self, answer: tuple[int, dict[str, list[str]], bytes], realm: str = DEFAULT_REALM) -> None:
        self.assertEqual(
            answer,
            (
                401,
                {
                    "content-type": ["text/plain"],
                    "www-authenticate": [f'Basic realm="{realm}"'],
                    "content-length": ["17"],
                },
                b"401 Unauthorized\n",
            ),
        )

    def test_interface(self) -> None:
        """
        The handler provides L{IHTTPHandler}.
        """
        self.assertTrue(verifyObject(IHTTPHandler, self.handler))
        self.assertIsInstance(self.handler, BasicAuthHandler)

    def test_noCredentials(self) -> None:
        """
        A request without Authorization gets Traefik's 401 (text/plain,
        "401 Unauthorized", the traefik realm) and is not forwarded.
        """
        self.assertUnauthorized(self.serve()[1])
        self.assertEqual(self.backend.seen, [])

    def test_wrongPassword(self) -> None:
        """
        A known user with a wrong password, in each format, gets the 401.
        """
        for user, password in (("alice", b"open"), ("carol", b"sha"), ("bob", b"pa:ss")):
            self.assertUnauthorized(self.serve(headers=[("authorization", basic(user.encode(), password))])[1])
        self.assertEqual(self.backend.seen, [])

    def test_unknownUser(self) -> None:
        """
        An unknown user gets the 401, even with a password that matches the
        hash checked in its place.
        """
        self.assertUnauthorized(self.serve(headers=[("authorization", basic(b"mallory", APR1_OPENSSL[0]))])[1])

    def test_unknownUserStillChecksAHash(self) -> None:
        """
        For an unknown user one configured hash is checked all the same.
        """
        checked = []
        checker = self.handler.checker
        self.patch(auth, "checkSecret", lambda password, secret: checked.append((password, secret)) or False)
        self.assertFalse(checker.check(b"mallory", b"guess"))
        self.assertEqual(checked, [(b"guess", APR1_OPENSSL[1])])

    def test_malformedCredentials(self) -> None:
        """
        Malformed Authorization values are answered 401, never 500.
        """
        for value in ("Basic", "Basic !!!!", "Basic YWJj", "Digest username=alice", "Basic " + "A" * 5, "basic"):
            self.assertUnauthorized(self.serve(headers=[("authorization", value)])[1])
        self.assertEqual(self.backend.seen, [])

    def test_success(self) -> None:
        """
        Valid credentials in each format are forwarded with their
        Authorization header kept.
        """
        for user, password in ((b"alice", APR1_OPENSSL[0]), (b"carol", SHA1[0]), (b"bob", BCRYPT_2Y[0])):
            _, answer = self.serve(headers=[("authorization", basic(user, password))])
            self.assertEqual(answer[::2], (200, b"ok"))
            self.assertEqual(self.backend.seen[-1][b"authorization"], [basic(user, password).encode()])
        self.assertEqual(len(self.backend.seen), 3)

    def test_firstAuthorizationField(self) -> None:
        """
        Only the first Authorization field counts, as with Go's
        C{Header.Get}.
        """
        good, bad = basic(b"carol", SHA1[0]), basic(b"carol", b"nope")
        self.assertEqual(self.serve(headers=[("authorization", good), ("authorization", bad)])[1][0], 200)
        self.assertUnauthorized(self.serve(headers=[("authorization", bad), ("authorization", good)])[1])

    def test_realm(self) -> None:
        """
        The realm is sent as configured; an empty one means "traefik".
        """
        handler, _ = build({"users": ["carol:" + SHA1[1].decode()], "realm": "Staff only"})
        self.assertUnauthorized(self.serve(handler)[1], "Staff only")
        handler, _ = build({"users": ["carol:" + SHA1[1].decode()], "realm": ""})
        self.assertUnauthorized(self.serve(handler)[1], "traefik")

    def test_head(self) -> None:
        """
        HEAD gets the 401 head with its Content-Length and no body.
        """
        status, headers, body = self.serve(method=b"HEAD")[1]
        self.assertEqual((status, headers["content-length"], body), (401, ["17"], b""))

    def test_keepsHeadersSetBefore(self) -> None:
        """
        Response headers set before the middleware answers are kept, and
        Content-Type and WWW-Authenticate are replaced.
        """
        request = makeRequest()
        request.responseHeaders.setRawHeaders(b"x-outer", [b"1"])
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/html"])
        self.handler.handle(request)
        status, headers, _ = response(request)
        self.assertEqual((status, headers["x-outer"], headers["content-type"]), (401, ["1"], ["text/plain"]))

    def test_removeHeader(self) -> None:
        """
        With removeHeader, the backend gets no Authorization field.
        """
        backend = Backend()
        handler, _ = build({"users": ["carol:" + SHA1[1].decode()], "removeHeader": True}, backend)
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"carol", SHA1[0]))])[1][0], 200)
        self.assertNotIn(b"authorization", backend.seen[0])

    def test_headerField(self) -> None:
        """
        headerField carries the user name to the backend, replacing what the
        client sent under any spelling of that name.
        """
        backend = Backend()
        handler, _ = build({"users": ["carol:" + SHA1[1].decode()], "headerField": "x-webauth-user"}, backend)
        credentials = ("Authorization", basic(b"carol", SHA1[0]))
        self.serve(handler, headers=[credentials, ("X-WebAuth-User", "admin"), ("x-webauth-user", "root")])
        self.assertEqual(backend.seen[0][b"x-webauth-user"], [b"carol"])
        self.assertIn(b"authorization", backend.seen[0])

    def test_headerFieldNotSetOnFailure(self) -> None:
        """
        A refused request forwards nothing, so no user header is invented.
        """
        backend = Backend()
        handler, _ = build({"users": ["carol:" + SHA1[1].decode()], "headerField": "X-User"}, backend)
        self.assertEqual(self.serve(handler, headers=[("X-User", "carol")])[1][0], 401)
        self.assertEqual(backend.seen, [])

    def test_headerFieldAuthorizationAndRemove(self) -> None:
        """
        headerField is applied before removeHeader, as in Traefik: naming
        Authorization in both leaves no Authorization at all.
        """
        backend = Backend()
        handler, _ = build(
            {"users": ["carol:" + SHA1[1].decode()], "headerField": "Authorization", "removeHeader": True}, backend
        )
        self.serve(handler, headers=[("Authorization", basic(b"carol", SHA1[0]))])
        self.assertNotIn(b"authorization", backend.seen[0])

    def test_passwordWithColonsAndEmptyParts(self) -> None:
        """
        Passwords with colons and an empty password work.
        """
        backend = Backend()
        handler, _ = build({"users": ["x:" + APR1_LONG[1].decode(), "e:" + APR1_EMPTY[1].decode()]}, backend)
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"x", APR1_LONG[0]))])[1][0], 200)
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"e", b""))])[1][0], 200)
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"e", b" "))])[1][0], 401)

    def test_nonASCIIUserName(self) -> None:
        """
        User names are compared as UTF-8 bytes, as Go compares strings.
        """
        backend = Backend()
        handler, _ = build({"users": ["jürgen:" + SHA1[1].decode()], "headerField": "X-User"}, backend)
        request, answer = self.serve(handler, headers=[("Authorization", basic("jürgen".encode(), SHA1[0]))])
        self.assertEqual(answer[0], 200)
        self.assertEqual(backend.seen[0][b"x-user"], ["jürgen".encode()])

    def test_unusableHashWarnsOnce(self) -> None:
        """
        An unusable hash puts one warning in the middleware's status however
        many routers build it; the other users still log in.
        """
        info = ObjectInfo(name="a@file", kind="basicAuth", config=basicAuthConfig(users=["p:plain", "carol:" + SHA1[1].decode()]))
        context = _Context()
        for _ in range(3):
            handler = buildMiddleware(context, info, Backend(), ())
        self.assertEqual(info.status, "warning")
        self.assertEqual(len(info.errors), 1)
        self.assertIn("basicAuth.users[0]", info.errors[0])
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"carol", SHA1[0]))])[1][0], 200)
        self.assertEqual(self.serve(handler, headers=[("Authorization", basic(b"p", b"plain"))])[1][0], 401)

    def test_buildErrorThroughRegistry(self) -> None:
        """
        The registry builds basicAuth and lets an unreadable usersFile
        through as a L{BuildError}.
        """
        missing = os.path.join(tempdir(self), "missing")
        error = self.assertRaises(BuildError, build, {"usersFile": missing})
        self.assertIn("basicAuth.usersFile: cannot read", str(error))

    def test_docsExample(self) -> None:
        """
        The example in docs/middlewares.rst decodes, and its inline bcrypt
        entry (htpasswd -nB alice) matches "secret".
        """
        with open(os.path.join(ROOT, "docs", "middlewares.rst"), encoding="utf-8") as f:
            text = f.read()
        start = text.index("::\n", text.index("basicAuth\n---------")) + 3
        lines = []
        for line in text[start:].splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        config = decodeDynamic(tomllib.loads("\n".join(lines)))
        middleware = config.http.middlewares["admin-auth"].config()
        self.assertEqual(middleware.headerField, "X-WebAuth-User")
        user, _, secret = middleware.users[0].partition(":")
        self.assertTrue(checkSecret(b"secret", secret.encode()))


class CheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.threads = FakeThreads()
        self.checker = Checker(
            {b"bob": BCRYPT_2Y[1], b"alice": APR1[1], b"empty": b""},
            self.threads,
        )

    def test_bcryptInThread(self) -> None:
        """
        bcrypt checks go to the thread runner; MD5-crypt is checked at once.
        """
        pending = self.checker.check(b"bob", BCRYPT_2Y[0])
        self.assertIsInstance(pending, defer.Deferred)
        self.assertEqual(len(self.threads.calls), 1)
        self.assertIs(self.checker.check(b"alice", APR1[0]), True)
        self.assertEqual(len(self.threads.calls), 1)
        self.threads.runAll()
        self.assertIs(self.successResultOf(pending), True)

    def test_joinsIdenticalChecks(self) -> None:
        """
        The same user and password checked again while the first check runs
        share that check; a different password gets its own.
        """
        first = self.checker.check(b"bob", BCRYPT_2Y[0])
        second = self.checker.check(b"bob", BCRYPT_2Y[0])
        other = self.checker.check(b"bob", b"wrong")
        self.assertEqual(len(self.threads.calls), 2)
        self.threads.runAll()
        self.assertEqual([self.successResultOf(d) for d in (first, second, other)], [True, True, False])

    def test_successCached(self) -> None:
        """
        After a successful check the same credentials are accepted at once;
        a failed one is checked again every time.
        """
        d = self.checker.check(b"bob", BCRYPT_2Y[0])
        self.threads.runAll()
        self.successResultOf(d)
        self.assertIs(self.checker.check(b"bob", BCRYPT_2Y[0]), True)
        self.assertEqual(self.threads.calls, [])
        for _ in range(2):
            d = self.checker.check(b"bob", b"wrong")
            self.assertEqual(len(self.threads.calls), 1)
            self.threads.runAll()
            self.assertIs(self.successResultOf(d), False)

    def test_cacheKeepsNoPassword(self) -> None:
        """
        The cache holds neither the password nor its plain SHA-256.
        """
        import hashlib

        d = self.checker.check(b"bob", BCRYPT_2Y[0])
        self.threads.runAll()
        self.successResultOf(d)
        ((user, secret, digest),) = self.checker._cache
        self.assertEqual((user, secret), (b"bob", BCRYPT_2Y[1]))
        self.assertNotIn(BCRYPT_2Y[0], digest)
        self.assertNotEqual(digest, hashlib.sha256(BCRYPT_2Y[0]).digest())

    def test_cacheBounded(self) -> None:
        """
        The cache keeps the most recently used successes up to its size.
        """
        checker = Checker({b"a": APR1[1], b"b": SHA1[1], b"c": MD5_CRYPT[1]}, None, cacheSize=2)
        self.assertTrue(checker.check(b"a", APR1[0]))
        self.assertTrue(checker.check(b"b", SHA1[0]))
        self.assertTrue(checker.check(b"a", APR1[0]))
        self.assertTrue(checker.check(b"c", MD5_CRYPT[0]))
        self.assertEqual([key[0] for key in checker._cache], [b"a", b"c"])
        self.assertEqual(CACHE_SIZE, 1024)

    def test_unknownUserFalseEvenIfDecoyMatches(self) -> None:
        """
        An unknown user (or one with an empty hash) is refused after its
        decoy check, even when the password matches the decoy.
        """
        for user in (b"mallory", b"empty"):
            d = self.checker.check(user, BCRYPT_2Y[0])
            self.threads.runAll()
            self.assertIs(self.successResultOf(d), False)
        self.assertEqual(self.checker._cache, {})

    def test_handlerWaitsForThread(self) -> None:
        """
        The handler forwards once the bcrypt check comes back, answers 401
        when it fails, and forwards nothing for a client gone meanwhile.
        """
        backend = Backend()
        handler = BasicAuthHandler(backend, "a@file", self.checker, "", "", False)
        waiting = makeRequest(headers=[("authorization", basic(b"bob", BCRYPT_2Y[0]))])
        refused = makeRequest(headers=[("authorization", basic(b"bob", b"no"))])
        gone = makeRequest(headers=[("authorization", basic(b"bob", b"gone"))])
        for request in (waiting, refused, gone):
            handler.handle(request)
        self.assertEqual(backend.seen, [])
        self.assertEqual(waiting.testTransport.written.getvalue(), b"")
        gone._disconnected = True
        self.threads.runAll()
        self.assertEqual(response(waiting)[0], 200)
        self.assertEqual(response(refused)[0], 401)
        self.assertEqual(gone.testTransport.written.getvalue(), b"")
        self.assertEqual(len(backend.seen), 1)

    def test_threadFailureRefuses(self) -> None:
        """
        A check that fails unexpectedly is logged and answered 401.
        """
        handler = BasicAuthHandler(Backend(), "a@file", self.checker, "", "", False)
        request = makeRequest(headers=[("authorization", basic(b"bob", b"x"))])
        handler.handle(request)
        (_, _, d), = self.threads.calls
        d.errback(Failure(RuntimeError("boom")))
        self.assertEqual(response(request)[0], 401)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sharedAcrossRoutersAndReloads(self) -> None:
        """
        Routers using one middleware share its checker, and a rebuild with
        the same users keeps it; changed users get a new one.
        """
        context = _Context()
        raw = {"users": ["carol:" + SHA1[1].decode()]}
        first, _ = build(raw, context=context)
        second, _ = build(raw, context=context)
        self.assertIs(first.checker, second.checker)
        other, _ = build(raw, context=context, name="other@file")
        self.assertIsNot(other.checker, first.checker)
        changed, _ = build({"users": ["carol:" + APR1[1].decode()]}, context=context)
        self.assertIsNot(changed.checker, first.checker)


class EndToEndTests(TestCase):
    """
    basicAuth through a real entrypoint, a real backend and the reactor's
    thread pool for bcrypt.
    """

    def setUp(self) -> None:
        self.port, self.echo = startBackend("B")
        self.addCleanup(self.port.stopListening)
        self.usersFile = usersFile(self, b"# staff\nbob:" + BCRYPT_2Y[1] + b"\nalice:" + APR1[1] + b"\n")
        missing = os.path.join(tempdir(self), "missing-htpasswd")
        static = makeStatic("127.0.0.1:0")
        self.watcher = Watcher(reactor, static, reactor=reactor)
        self.addCleanup(self.watcher.stop)
        backend = {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{self.port.getHost().port}"}]}}
        config = {
            "http": {
                "routers": {
                    "private": {"rule": "PathPrefix(`/private`)", "service": "s", "middlewares": ["auth"]},
                    "broken": {"rule": "PathPrefix(`/broken`)", "service": "s", "middlewares": ["bad"]},
                    "open": {"rule": "PathPrefix(`/open`)", "service": "s"},
                },
                "middlewares": {
                    "auth": {
                        "basicAuth": {
                            "usersFile": self.usersFile,
                            "users": ["carol:" + SHA1[1].decode()],
                            "realm": "relayd tests",
                            "headerField": "X-WebAuth-User",
                            "removeHeader": True,
                        }
                    },
                    "bad": {"basicAuth": {"usersFile": missing}},
                },
                "services": {"s": backend},
            }
        }
        self.missing = missing
        self.watcher.update(ProviderUpdate("file", decodeDynamic(config)))
        self.ep = EntryPointService("web", static.entryPoints["web"], reactor, self.watcher.runtime)
        self.watcher.addListener(self.ep.swap)
        self.ep.startService()
        self.addCleanup(self.ep.stopService)

    def get(self, path: str, *headers: str) -> defer.Deferred[bytes]:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(h + "\r\n" for h in headers)
        return rawRequest(self.ep.port, head.encode() + b"\r\n")

    @defer.inlineCallbacks
    def test_refused(self) -> Any:
        """
        Without credentials the client gets the exact 401 and the backend
        nothing.
        """
        answer = yield self.get("/private/x")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 401 Unauthorized")
        self.assertIn(b'Www-Authenticate: Basic realm="relayd tests"', lines)
        self.assertIn(b"Content-Type: text/plain", lines)
        self.assertIn(b"Content-Length: 17", lines)
        self.assertEqual(body, UNAUTHORIZED_BODY)
        self.assertEqual(self.echo.requests, [])

    @defer.inlineCallbacks
    def test_bcryptUserFromFile(self) -> Any:
        """
        A bcrypt user from the file gets through (the check runs in the
        thread pool), with its name in X-WebAuth-User and no Authorization;
        a wrong password does not.
        """
        answer = yield self.get("/private/x", "Authorization: " + basic(b"bob", BCRYPT_2Y[0]))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        (seen,) = self.echo.requests
        self.assertEqual(seen["headers"]["x-webauth-user"], ["bob"])
        self.assertNotIn("authorization", seen["headers"])
        answer = yield self.get("/private/x", "Authorization: " + basic(b"bob", b"pa:ss w0rd!"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        self.assertEqual(len(self.echo.requests), 1)

    @defer.inlineCallbacks
    def test_inlineAndFileUsers(self) -> Any:
        """
        Users from C{users} and from the file both log in.
        """
        for user, password in ((b"alice", APR1[0]), (b"carol", SHA1[0])):
            answer = yield self.get("/private/", "Authorization: " + basic(user, password))
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertEqual([r["headers"]["x-webauth-user"] for r in self.echo.requests], [["alice"], ["carol"]])

    @defer.inlineCallbacks
    def test_refusedBodyThenNextRequest(self) -> Any:
        """
        A refused POST's unread body does not spoil the connection: the
        request pipelined behind it is authenticated and forwarded.
        """
        credentials = basic(b"carol", SHA1[0]).encode()
        answer = yield rawRequest(
            self.ep.port,
            b"POST /private/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /private/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + credentials + b"\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer)
        self.assertIn(b"\r\n\r\n401 Unauthorized\nHTTP/1.1 200 OK\r\n", answer)
        self.assertEqual([r["uri"] for r in self.echo.requests], ["/private/b"])

    @defer.inlineCallbacks
    def test_badUsersFileDisablesOnlyItsRouter(self) -> Any:
        """
        A middleware whose usersFile cannot be read is disabled with an
        error naming the key and the file, its router is disabled (404), and
        the other routers keep serving.
        """
        runtime = self.watcher.runtime
        info = runtime.middlewares["bad@file"]
        self.assertEqual(info.status, "disabled")
        self.assertEqual(info.errors, [f"basicAuth.usersFile: cannot read {self.missing!r}: No such file or directory"])
        self.assertEqual(runtime.routers["broken@file"].status, "disabled")
        self.assertEqual(runtime.routers["private@file"].status, "enabled")
        answer = yield self.get("/broken")
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer)
        answer = yield self.get("/open")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
