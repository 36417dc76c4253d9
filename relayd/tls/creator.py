"""
The connection side of TLS termination: a Twisted connection creator whose
connections choose their certificate and options during the handshake, from
the TLS runtime that is current at that moment (so a new certificate is served
from the next handshake on, with no restart and no dropped connection), and
what a connection remembers of that choice.

OpenSSL asks for the server name only after it has chosen the protocol version
and, in TLS 1.3, the key exchange group. A connection therefore starts on a
bootstrap context that allows every version and group of the options in use;
once the name is known, the connection switches to the real context and
refuses the handshake if the version or group already chosen is one that the
options do not allow. A caller that read the ClientHello itself can start the
connection on the final context instead (L{SNIConnectionCreator.forServerName}),
which gets versions and groups exactly as configured.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.logger import Logger
from zope.interface import implementer

from relayd.tls.options import (
    ALERT_HANDSHAKE_FAILURE,
    ALERT_PROTOCOL_VERSION,
    ALERT_UNRECOGNIZED_NAME,
    NO_CLIENT_CERT,
    TLS13,
    BootstrapSpec,
    buildBootstrap,
    refusingContext,
    setConnectionGroups,
)
from relayd.tls.store import Selection, TLSRuntime

_log = Logger()


class TLSConnection(SSL.Connection):
    """
    An OpenSSL server connection that keeps what its handshake chose.

    @ivar tlsServerName: the SNI the client sent (lower case), or None.
    @ivar tlsOptionsName: the name of the TLS options applied; None until the
        server name was handled, and on a refused handshake.
    """

    tlsServerName: str | None = None
    tlsOptionsName: str | None = None
    # The creator whose runtime decides at the server name (bootstrap
    # contexts are shared by every creator).
    tlsCreator: SNIConnectionCreator | None = None


@attrs.frozen
class HandshakeInfo:
    """
    What relayd chose for a TLS connection: the client's server name and the
    TLS options applied (read it after the handshake).
    """

    serverName: str | None
    optionsName: str | None


def handshakeInfo(connection: Any) -> HandshakeInfo:
    """
    The choices made for a connection created by L{SNIConnectionCreator}:
    pass the L{OpenSSL.SSL.Connection} (C{TLSMemoryBIOProtocol.getHandle()}).
    """
    return HandshakeInfo(
        serverName=getattr(connection, "tlsServerName", None),
        optionsName=getattr(connection, "tlsOptionsName", None),
    )


def _sessionReused(connection: SSL.Connection) -> bool:
    # pyOpenSSL has no public call for this; OpenSSL's is in its bindings.
    from OpenSSL._util import lib

    return bool(lib.SSL_session_reused(connection._ssl))


def _localAddress(connection: SSL.Connection) -> str | None:
    """
    The local address of the socket under a connection, when Twisted's TLS
    protocol (the connection's app data) has a transport.
    """
    try:
        return str(connection.get_app_data().transport.getHost().host)
    except Exception:
        return None


# Bootstrap contexts by what they allow, shared by every creator of the
# process (a few at most: they change only with the versions and groups of
# the options in use).
_bootstraps: dict[BootstrapSpec, SSL.Context] = {}
_BOOTSTRAPS_KEPT = 16
_refusing: list[SSL.Context] = []


def _bootstrap(spec: BootstrapSpec) -> SSL.Context:
    context = _bootstraps.get(spec)
    if context is None:
        if len(_bootstraps) >= _BOOTSTRAPS_KEPT:
            _bootstraps.clear()
        context = _bootstraps[spec] = buildBootstrap(spec, _onServerName)
    return context


def _refusingContext() -> SSL.Context:
    if not _refusing:
        _refusing.append(refusingContext())
    return _refusing[0]


def _onServerName(connection: SSL.Connection) -> int | None:
    """
    The bootstrap contexts' server name callback: the connection's creator
    decides.
    """
    creator = getattr(connection, "tlsCreator", None)
    if creator is None:
        return ALERT_HANDSHAKE_FAILURE
    return creator._decide(connection)


@implementer(IOpenSSLServerConnectionCreator)
class SNIConnectionCreator:
    """
    Creates server TLS connections for one entrypoint, each of which asks
    C{currentRuntime()} for its context when the client's server name
    arrives. Cheap to make: the contexts behind it are shared.
    """

    def __init__(self, currentRuntime: Callable[[], TLSRuntime], entryPoint: str | None = None) -> None:
        self._currentRuntime = currentRuntime
        self._entryPoint = entryPoint

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A connection on the bootstrap context of the current runtime.
        """
        connection = TLSConnection(_bootstrap(self._currentRuntime().bootstrapSpec), None)
        connection.tlsCreator = self
        return connection

    def forServerName(self, serverName: str | None, localAddress: str | None = None) -> PinnedConnectionCreator:
        """
        A creator for one connection whose ClientHello the caller has already
        read: its connection starts on the final context for C{serverName}.
        """
        return PinnedConnectionCreator(self, serverName, localAddress)

    def connectionFor(self, serverName: str | None, localAddress: str | None = None) -> SSL.Connection:
        """
        A connection on the final context for C{serverName}, chosen now from
        the current runtime (one that fails its handshake when refused).
        """
        name = _normalize(serverName)
        try:
            selection = self._currentRuntime().select(name, self._entryPoint, None, localAddress)
        except Exception:
            _log.failure("choosing the TLS context for {serverName!r} failed", serverName=name)
            selection = None
        if selection is None:
            _log.debug("TLS handshake for {serverName!r} refused", serverName=name)
            connection = TLSConnection(_refusingContext(), None)
        else:
            connection = TLSConnection(selection.context, None)
            connection.tlsOptionsName = selection.optionsName
        connection.tlsServerName = name
        return connection

    def _decide(self, connection: SSL.Connection) -> int | None:
        """
        At the server name: switch the connection to its real context, or
        return the TLS alert that refuses the handshake.
        """
        assert isinstance(connection, TLSConnection)
        raw = connection.get_servername()
        name = _normalize(raw.decode("ascii", "replace") if raw else None)
        connection.tlsServerName = name
        connection.tlsOptionsName = None
        selection: Selection | None = None
        try:
            localAddress = None if name else _localAddress(connection)
            selection = self._currentRuntime().select(name, self._entryPoint, None, localAddress)
            if selection is None:
                refusal: tuple[int, str] | None = (
                    ALERT_UNRECOGNIZED_NAME,
                    "no certificate or usable TLS options for this name",
                )
            else:
                refusal = _mismatch(connection, selection)
        except Exception:
            _log.failure("choosing the TLS context for {serverName!r} failed", serverName=name)
            refusal = (ALERT_HANDSHAKE_FAILURE, "internal error")
        if refusal is not None or selection is None:
            alert, reason = refusal or (ALERT_HANDSHAKE_FAILURE, "")
            _log.debug("TLS handshake for {serverName!r} refused: {reason}", serverName=name, reason=reason)
            return alert
        options = selection.options
        connection.set_context(selection.context)
        # Settings that OpenSSL copies into a connection when it is created
        # follow the options here; the rest come with the context.
        connection.set_verify(options.verifyMode, options.verifyCallback)
        if not options.sessionTickets:
            connection.set_options(SSL.OP_NO_TICKET)
        if options.groups and connection.get_protocol_version() < TLS13:
            setConnectionGroups(connection, options.groups)
        connection.tlsOptionsName = selection.optionsName
        return None


@implementer(IOpenSSLServerConnectionCreator)
class PinnedConnectionCreator:
    """
    A creator for a connection whose server name is known before the
    handshake (see L{SNIConnectionCreator.forServerName}).
    """

    def __init__(self, parent: SNIConnectionCreator, serverName: str | None, localAddress: str | None) -> None:
        self._parent = parent
        self._serverName = serverName
        self._localAddress = localAddress

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return self._parent.connectionFor(self._serverName, self._localAddress)


def _normalize(serverName: str | None) -> str | None:
    if not serverName:
        return None
    return serverName.strip().lower() or None


def _mismatch(connection: SSL.Connection, selection: Selection) -> tuple[int, str] | None:
    """
    Why a handshake already under way cannot continue with these options
    (the alert and the reason), or None: the version (and in TLS 1.3 the key
    share group) was chosen on the bootstrap context, and a session resumed
    there never went through these options' checks.
    """
    options = selection.options
    name = selection.optionsName
    version = connection.get_protocol_version()
    if not options.allowsVersion(version):
        return ALERT_PROTOCOL_VERSION, f"{connection.get_protocol_version_name()} is not allowed by the TLS options {name}"
    if version == TLS13 and not options.allowsGroup(connection.get_group_name()):
        return ALERT_HANDSHAKE_FAILURE, f"group {connection.get_group_name()} is not in the curvePreferences of {name}"
    if options.clientAuth != NO_CLIENT_CERT and _sessionReused(connection):
        return ALERT_HANDSHAKE_FAILURE, "a resumed session cannot skip the client certificate check"
    return None


def serverConnectionCreator(
    currentRuntime: Callable[[], TLSRuntime], entryPoint: str | None = None
) -> SNIConnectionCreator:
    """
    The connection creator for Twisted's C{TLSMemoryBIOFactory} on an
    entrypoint: C{currentRuntime} returns the TLS runtime of the generation
    being served (C{lambda: watcher.runtime.tls}).
    """
    return SNIConnectionCreator(currentRuntime, entryPoint)


def tlsTransport(request: Any) -> TLSMemoryBIOProtocol | None:
    """
    The TLS connection C{request} arrived on, or C{None} for a plain one:
    the channel's transport for HTTP/1.1, the connection's for an HTTP/2
    stream. Its C{getHandle()} is the L{OpenSSL.SSL.Connection}.
    """
    stream = getattr(request, "stream", None)
    connection = getattr(stream, "connection", None)
    candidates = (getattr(connection, "transport", None), getattr(getattr(request, "channel", None), "transport", None))
    for transport in candidates:
        if isinstance(transport, TLSMemoryBIOProtocol):
            return transport
    return None
