"""
TLS options: Traefik's (Go's) names for protocol versions, cipher suites,
curves and client authentication, turned into OpenSSL settings; validation
with key paths; and the pyOpenSSL server contexts built from one certificate
and one set of options.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs
from OpenSSL import SSL, crypto

from relayd.config.dynamic import TLSOptions
from relayd.tls.material import CABundle, KeyPair, MaterialError, loadCABundle

VERSIONS = {
    "VersionTLS10": SSL.TLS1_VERSION,
    "VersionTLS11": SSL.TLS1_1_VERSION,
    "VersionTLS12": SSL.TLS1_2_VERSION,
    "VersionTLS13": SSL.TLS1_3_VERSION,
}
TLS12 = SSL.TLS1_2_VERSION
TLS13 = SSL.TLS1_3_VERSION

# Go's TLS 1.0-1.2 cipher suite names and their OpenSSL names, in Go's order
# of preference (Go ignores the configured order and always prefers its own).
_TLS12_SUITES = (
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"),
    ("TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"),
)
CIPHER_SUITES = dict(_TLS12_SUITES)
# Go's older spellings of the ChaCha20 suites.
CIPHER_SUITES["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"] = "ECDHE-ECDSA-CHACHA20-POLY1305"
CIPHER_SUITES["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"] = "ECDHE-RSA-CHACHA20-POLY1305"
_PREFERENCE = {openssl: rank for rank, (_, openssl) in enumerate(_TLS12_SUITES)}

# Names Go accepts in cipherSuites that configure nothing: TLS 1.3 suites are
# not configurable, and the fallback SCSV is not a suite to negotiate.
IGNORED_SUITES = frozenset(
    {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_FALLBACK_SCSV",
    }
)

# What Traefik's default options allow: Go's list of secure suites.
DEFAULT_SUITES = tuple(go for go, _ in _TLS12_SUITES[:10])

# Curve names Traefik accepts (Go's and the RFC spellings), as OpenSSL groups.
CURVES = {
    "CurveP256": "P-256",
    "secp256r1": "P-256",
    "CurveP384": "P-384",
    "secp384r1": "P-384",
    "CurveP521": "P-521",
    "secp521r1": "P-521",
    "X25519": "X25519",
    "x25519": "X25519",
    "X25519MLKEM768": "X25519MLKEM768",
    "x25519mlkem768": "X25519MLKEM768",
}
# How OpenSSL reports a negotiated group, by the name relayd configures.
GROUP_REPORTED = {
    "P-256": "secp256r1",
    "P-384": "secp384r1",
    "P-521": "secp521r1",
    "X25519": "x25519",
    "X25519MLKEM768": "x25519mlkem768",
}
# Go's default curve preferences (the post-quantum hybrid where OpenSSL has it).
_DEFAULT_GROUPS = ("X25519MLKEM768", "X25519", "P-256", "P-384", "P-521")

NO_CLIENT_CERT = "NoClientCert"
_VERIFYING = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_VERIFY_MODES = {
    "NoClientCert": SSL.VERIFY_NONE,
    "RequestClientCert": SSL.VERIFY_PEER,
    "RequireAnyClientCert": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
    "VerifyClientCertIfGiven": SSL.VERIFY_PEER,
    "RequireAndVerifyClientCert": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
}

# Every context relayd builds shares one session ID context, so a switch of
# context during the handshake keeps the session bound to relayd's.
SESSION_ID_CONTEXT = b"relayd"


def _acceptAnyCertificate(connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
    """
    Verification callback of RequestClientCert and RequireAnyClientCert: a
    client certificate is taken whatever its chain.
    """
    return True


@attrs.frozen
class ResolvedOptions:
    """
    One set of TLS options in OpenSSL's terms. Equal values build equal
    contexts, so this (with the certificate) is the key of the context cache;
    the options' name is not part of it.

    @ivar maxVersion: the highest protocol version allowed.
    @ivar ciphers: the OpenSSL cipher string for TLS 1.2 and below.
    @ivar groups: the OpenSSL group names, or () for the defaults.
    @ivar clientAuth: the effective Go client authentication type.
    @ivar caDigest: a hash of the CA bundle (part of equality), the bundle
        itself being in C{ca}.
    @ivar alpn: the server's ALPN protocols in preference order.
    @ivar sessionTickets: whether session tickets are issued.
    """

    minVersion: int
    maxVersion: int
    ciphers: bytes
    groups: tuple[str, ...]
    clientAuth: str
    caDigest: bytes
    sniStrict: bool
    alpn: tuple[bytes, ...]
    sessionTickets: bool
    ca: CABundle | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def verifyMode(self) -> int:
        return _VERIFY_MODES[self.clientAuth]

    @property
    def verifyCallback(self) -> Callable[..., bool] | None:
        """
        None where OpenSSL's own verification result decides.
        """
        if self.clientAuth in ("RequestClientCert", "RequireAnyClientCert"):
            return _acceptAnyCertificate
        return None

    def allowsVersion(self, version: int) -> bool:
        return self.minVersion <= version <= self.maxVersion

    def allowsGroup(self, reported: str | None) -> bool:
        """
        Whether a negotiated group (as OpenSSL reports it) is one these
        options allow; always true with the default groups.
        """
        if not self.groups or reported is None:
            return True
        return reported.lower() in {GROUP_REPORTED.get(g, g).lower() for g in self.groups}


@attrs.frozen
class Problem:
    """
    What is wrong with one key of the configuration. C{fatal} problems make
    the object unusable; the others say what is ignored.
    """

    path: str
    message: str
    fatal: bool = True


_probed: dict[tuple[str, bytes], bool] = {}


def _opensslHas(kind: str, value: bytes) -> bool:
    """
    Whether the linked OpenSSL accepts a cipher or group name (probed once).
    """
    key = (kind, value)
    if key not in _probed:
        context = SSL.Context(SSL.TLS_METHOD)
        try:
            if kind == "cipher":
                context.set_cipher_list(value)
                supported = value.decode("ascii") in SSL.Connection(context).get_cipher_list()
            else:
                supported = _setGroups(context, (value.decode("ascii"),))
        except SSL.Error:
            supported = False
        _probed[key] = supported
    return _probed[key]


def _setGroups(context: SSL.Context, groups: Sequence[str]) -> bool:
    """
    Set the key exchange groups of a context. pyOpenSSL has no public call for
    a list of groups; OpenSSL's own is reached through its bindings.
    """
    from OpenSSL._util import lib

    setter = getattr(lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:
        return False
    return bool(setter(context._context, ":".join(groups).encode("ascii")))


def setConnectionGroups(connection: SSL.Connection, groups: Sequence[str]) -> bool:
    """
    Set the key exchange groups of one connection (in TLS 1.2 they are used
    after the server name is known, so options can still choose them).
    """
    from OpenSSL._util import lib

    setter = getattr(lib, "SSL_set1_curves_list", None)
    if setter is None:
        return False
    return bool(setter(connection._ssl, ":".join(groups).encode("ascii")))


def defaultGroups() -> tuple[str, ...]:
    """
    Go's default groups that the linked OpenSSL has.
    """
    return tuple(g for g in _DEFAULT_GROUPS if _opensslHas("group", g.encode("ascii")))


def resolveOptions(options: TLSOptions, path: str) -> tuple[ResolvedOptions | None, list[Problem]]:
    """
    Check one set of options and translate it. Returns None with at least one
    fatal problem when the options cannot be used (as Traefik refuses to build
    them: unknown cipher suite or curve, unreadable CA files, a verifying
    client authentication type without CA files); names that Go accepts but
    the linked OpenSSL lacks are ignored with a non-fatal problem.
    """
    problems: list[Problem] = []
    minVersion = VERSIONS[options.minVersion]
    maxVersion = VERSIONS[options.maxVersion] if options.maxVersion else TLS13

    suites = options.cipherSuites if options.cipherSuites else DEFAULT_SUITES
    names: list[str] = []
    for index, suite in enumerate(suites):
        if suite in IGNORED_SUITES:
            continue
        openssl = CIPHER_SUITES.get(suite)
        if openssl is None:
            problems.append(Problem(f"{path}.cipherSuites[{index}]", f"unknown cipher suite {suite!r}"))
        elif not _opensslHas("cipher", openssl.encode("ascii")):
            problems.append(
                Problem(
                    f"{path}.cipherSuites[{index}]",
                    f"{suite} is not available in this OpenSSL build; ignored",
                    fatal=False,
                )
            )
        elif openssl not in names:
            names.append(openssl)
    names.sort(key=lambda n: _PREFERENCE[n])
    if not names and minVersion < TLS13:
        # Without a usable suite below TLS 1.3, only TLS 1.3 can be negotiated
        # (Go fails those handshakes the same way).
        if maxVersion < TLS13:
            problems.append(Problem(f"{path}.cipherSuites", "no cipher suite usable below TLS 1.3 is left"))
        minVersion = TLS13
    ciphers = ":".join(names).encode("ascii")
    if names and minVersion < TLS12:
        # OpenSSL's default security level refuses TLS 1.0 and 1.1 outright;
        # options that ask for them get them, as in Go.
        ciphers += b":@SECLEVEL=0"

    groups: list[str] = []
    for index, curve in enumerate(options.curvePreferences):
        group = CURVES.get(curve)
        if group is None:
            problems.append(Problem(f"{path}.curvePreferences[{index}]", f"unknown curve {curve!r}"))
        elif not _opensslHas("group", group.encode("ascii")):
            problems.append(
                Problem(
                    f"{path}.curvePreferences[{index}]",
                    f"{curve} is not available in this OpenSSL build; ignored",
                    fatal=False,
                )
            )
        elif group not in groups:
            groups.append(group)
    if options.curvePreferences and not groups and not any(p.fatal for p in problems):
        problems.append(Problem(f"{path}.curvePreferences", "no curve usable with this OpenSSL build is left"))

    clientAuth: str = options.clientAuth.clientAuthType
    if not clientAuth:
        # As in Traefik: CA files alone require and verify client certificates.
        clientAuth = "RequireAndVerifyClientCert" if options.clientAuth.caFiles else NO_CLIENT_CERT
    ca: CABundle | None = None
    if options.clientAuth.caFiles:
        try:
            ca = loadCABundle(options.clientAuth.caFiles)
        except MaterialError as e:
            problems.append(Problem(f"{path}.clientAuth.caFiles", str(e)))
    elif clientAuth in _VERIFYING:
        problems.append(Problem(f"{path}.clientAuth.caFiles", f"clientAuthType {clientAuth} needs caFiles"))

    if any(p.fatal for p in problems):
        return None, problems
    return (
        ResolvedOptions(
            minVersion=minVersion,
            maxVersion=maxVersion,
            ciphers=ciphers,
            groups=tuple(groups),
            clientAuth=clientAuth,
            caDigest=ca.digest if ca is not None else b"",
            sniStrict=options.sniStrict,
            alpn=tuple(p.encode("ascii", "replace") for p in options.alpnProtocols if p),
            sessionTickets=not options.disableSessionTickets and clientAuth == NO_CLIENT_CERT,
            ca=ca,
        ),
        problems,
    )


def _alpnSelector(protocols: tuple[bytes, ...]) -> Callable[[Any, list[bytes]], Any]:
    """
    Go's server-side ALPN choice: the first of the server's protocols that the
    client offers. A client offering only http/1.1 to a server listing h2
    proceeds without ALPN; any other mismatch fails the handshake.
    """
    fallback = b"h2" in protocols

    def select(connection: Any, offered: list[bytes]) -> Any:
        for protocol in protocols:
            if protocol in offered:
                return protocol
        if fallback and b"http/1.1" in offered:
            return SSL.NO_OVERLAPPING_PROTOCOLS
        return b""

    return select


def _baseContext(minVersion: int, maxVersion: int, groups: Sequence[str], tickets: bool) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(minVersion)
    context.set_max_proto_version(maxVersion)
    flags = SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION
    if not tickets:
        flags |= SSL.OP_NO_TICKET
    context.set_options(flags)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # Resumption is by session ticket only: a server-side cache would let a
    # session made under one set of options resume under another.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_session_id(SESSION_ID_CONTEXT)
    _setGroups(context, groups or defaultGroups())
    return context


def buildContext(pair: KeyPair, options: ResolvedOptions) -> SSL.Context:
    """
    A server context that serves C{pair} with C{options}, complete in itself
    (usable from the first byte of a handshake, or switched to from the
    bootstrap context once the server name is known).
    """
    context = _baseContext(options.minVersion, options.maxVersion, options.groups, options.sessionTickets)
    if options.ciphers:
        context.set_cipher_list(options.ciphers)
    context.use_certificate(pair.leaf)
    context.use_privatekey(pair.key)
    for intermediate in pair.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.check_privatekey()
    context.set_verify(options.verifyMode, options.verifyCallback)
    if options.ca is not None:
        store = context.get_cert_store()
        assert store is not None
        for certificate in options.ca.certificates:
            store.add_cert(crypto.X509.from_cryptography(certificate))
            context.add_client_ca(certificate)
    if options.alpn:
        context.set_alpn_select_callback(_alpnSelector(options.alpn))
    return context


@attrs.frozen
class BootstrapSpec:
    """
    What a connection must allow before its server name is known: the
    widest version range and every group of the options in use (the
    protocol version and a TLS 1.3 key share are chosen before OpenSSL asks
    for the server name).
    """

    minVersion: int
    maxVersion: int
    groups: tuple[str, ...]

    @classmethod
    def covering(cls, options: Sequence[ResolvedOptions]) -> BootstrapSpec:
        if not options:
            return cls(TLS12, TLS13, ())
        groups: list[str] = []
        if any(not o.groups for o in options):
            groups.extend(defaultGroups())
        for o in options:
            groups.extend(g for g in o.groups if g not in groups)
        return cls(
            minVersion=min(o.minVersion for o in options),
            maxVersion=max(o.maxVersion for o in options),
            groups=tuple(groups),
        )


# TLS alerts a refused handshake ends with.
ALERT_HANDSHAKE_FAILURE = 40
ALERT_PROTOCOL_VERSION = 70
ALERT_UNRECOGNIZED_NAME = 112


def _setRefusingServerNameCallback(context: SSL.Context, decide: Callable[[SSL.Connection], int | None]) -> bool:
    """
    Install a server name callback that can fail the handshake with an alert
    (C{decide} returns None to go on, or the alert to send). pyOpenSSL's own
    callback cannot refuse without printing a traceback, and a refusal must
    also stop a resumed session, which needs no certificate; so this goes to
    OpenSSL through the bindings pyOpenSSL itself uses. False when they are
    not there.
    """
    try:
        from OpenSSL._util import ffi, lib

        setter = lib.SSL_CTX_set_tlsext_servername_callback
        fatal = lib.SSL_TLSEXT_ERR_ALERT_FATAL
        connections = SSL.Connection._reverse_mapping
    except (ImportError, AttributeError):
        return False

    def callback(ssl: Any, alert: Any, arg: Any) -> int:
        try:
            refusal = decide(connections[ssl])
        except Exception:
            refusal = ALERT_HANDSHAKE_FAILURE
        if refusal is None:
            return 0
        alert[0] = refusal
        return int(fatal)

    handle = ffi.callback("int (*)(SSL *, int *, void *)", callback)
    # The C callback lives as long as the context that holds it.
    context._relaydServerNameCallback = handle  # type: ignore[attr-defined]
    setter(context._context, handle)
    return True


def buildBootstrap(spec: BootstrapSpec, decide: Callable[[SSL.Connection], int | None]) -> SSL.Context:
    """
    The context a connection starts on: no certificate of its own, and a
    server name callback (C{decide}) that switches the connection to its real
    context, or returns the alert that refuses the handshake.
    """
    context = _baseContext(spec.minVersion, spec.maxVersion, spec.groups, tickets=True)
    if not _setRefusingServerNameCallback(context, decide):
        # Refusing then means switching to a context without a certificate,
        # which a resumed session would get past: no resumption at all.
        context.set_options(SSL.OP_NO_TICKET)
        refusing = refusingContext()

        def switch(connection: SSL.Connection) -> None:
            if decide(connection) is not None:
                connection.set_context(refusing)

        context.set_tlsext_servername_callback(switch)
    return context


def refusingContext() -> SSL.Context:
    """
    A context with no certificate: a handshake switched to it fails with a
    handshake_failure alert.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_session_id(SESSION_ID_CONTEXT)
    return context
