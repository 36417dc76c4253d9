"""
The HTTP provider: dynamic configuration polled from an HTTP(S) endpoint that
answers with it in JSON (Traefik's shape, the same keys as the file provider;
YAML is accepted too, as Traefik decodes the body as YAML). Every
C{pollInterval} seconds the endpoint is asked with the configured headers; an
answer whose body hashes like the last one is skipped; a non-200 status, a
timeout, a connection or TLS error or a body that does not decode is logged and
reported while the last good configuration stays.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from twisted.application import service
from twisted.internet import defer
from twisted.internet import error as internetError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from relayd.config.dynamic import DynamicConfig, decodeDynamicWithWarnings
from relayd.config.errors import ConfigError, ConfigErrors, flatten
from relayd.config.loader import parseDocument
from relayd.config.static import ClientTLS
from relayd.config.static import HTTPProvider as HTTPProviderConfig
from relayd.providers.base import PollingProvider, Sink, SourceError
from relayd.proxy.transport import TransportError, tlsCreator
from relayd.proxy.upstream import TransportSettings


@implementer(IPolicyForHTTPS)
class _ClientTLSPolicy:
    """
    The provider's C{tls} options as the Agent's HTTPS policy: the endpoint's
    certificate verified (service-identity) against C{ca} or the system's
    trust store, unless C{insecureSkipVerify}; a client certificate from
    C{cert} and C{key}. Files are read again when they change.
    """

    def __init__(self, tls: ClientTLS | None) -> None:
        if tls is None:
            self.settings = TransportSettings(name="providers.http")
        else:
            self.settings = TransportSettings(
                name="providers.http",
                insecureSkipVerify=tls.insecureSkipVerify,
                rootCAs=(tls.ca,) if tls.ca else (),
                certificates=((tls.cert, tls.key),) if tls.cert or tls.key else (),
            )

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        try:
            return tlsCreator(self.settings, hostname.decode("idna"))
        except TransportError as e:
            raise SourceError(f"tls: {e}") from None


class HTTPProvider(PollingProvider):
    """
    Polls C{providers.http.endpoint}; objects are named C{name@http}.
    """

    _log = Logger()
    providerName = "http"

    def __init__(
        self,
        reactor: IReactorTime,
        sink: Sink,
        config: HTTPProviderConfig,
        agent: Any = None,
    ) -> None:
        timeout = float(config.pollTimeout)
        super().__init__(reactor, sink, interval=float(config.pollInterval), timeout=timeout)
        self.config = config
        self.endpoint = _shown(config.endpoint)
        self.problem = _problem(config)
        self._url, self._authorization = _credentials(config.endpoint) if self.problem is None else (b"", None)
        if agent is None and self.problem is None:
            self._pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(
                reactor,
                contextFactory=_ClientTLSPolicy(config.tls),
                connectTimeout=timeout or None,
                pool=self._pool,
            )
        self.agent = agent
        self._lastHash: bytes | None = None
        self._lastError: ConfigError | None = None

    def startService(self) -> None:
        if self.problem is not None:
            # Like Traefik, a provider that cannot be set up does not run;
            # the rest of relayd does.
            service.Service.startService(self)
            self._log.error("http provider: {error}; not polling", error=str(self.problem))
            self.errors = (self.problem,)
            self._publishChanged()
            return
        self._log.info("http provider: polling {endpoint} every {interval}s",
                       endpoint=self.endpoint, interval=float(self.config.pollInterval))
        super().startService()

    async def _get(self) -> tuple[int, bytes]:
        headers = Headers()
        for name, value in self.config.headers.items():
            headers.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
        if self._authorization and not headers.hasHeader(b"authorization"):
            headers.setRawHeaders(b"authorization", [self._authorization])
        return await get(self.agent, self._url, headers, "cannot fetch configuration data")

    async def _fetch(self) -> DynamicConfig | None:
        code, body = await self._get()
        if code != 200:
            raise SourceError(f"received non-ok response code: {code}")
        digest = hashlib.sha256(body).digest()
        if digest == self._lastHash:
            if self._lastError is not None:
                raise self._lastError
            return None
        self._lastHash = digest
        try:
            config = self._decode(body)
        except ConfigError as e:
            self._lastError = e
            raise
        self._lastError = None
        self._log.info("http provider: new configuration from {endpoint}", endpoint=self.endpoint)
        return config

    def fetch(self) -> defer.Deferred[DynamicConfig | None]:
        return defer.Deferred.fromCoroutine(self._fetch())

    def _decode(self, body: bytes) -> DynamicConfig:
        source = self.endpoint
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError("", f"not UTF-8 text: {e}", source) from None
        try:
            raw = json.loads(text) if text.strip() else None
        except ValueError as e:
            jsonError = ConfigError("", f"not valid JSON: {e}", source)
            try:
                raw = parseDocument(text, "response.yaml")
            except ConfigError:
                raise jsonError from None
            if not isinstance(raw, dict):
                raise jsonError from None
        try:
            config, warnings = decodeDynamicWithWarnings(raw)
        except ConfigError as e:
            errors = [err if err.source else err.withSource(source) for err in flatten([e])]
            if len(errors) == 1:
                raise errors[0] from None
            raise ConfigErrors(errors) from None
        for warning in warnings:
            self._log.warn("http provider: {warning}", warning=warning)
        return config


def _problem(config: HTTPProviderConfig) -> ConfigError | None:
    """
    What keeps the provider from running at all (Traefik's C{Init} checks).
    """
    path = "providers.http"
    if not config.endpoint:
        return ConfigError(f"{path}.endpoint", "non-empty endpoint is required")
    try:
        parts = urlsplit(config.endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and config.endpoint.isascii()
    except ValueError:
        valid = False
    if not valid:
        return ConfigError(f"{path}.endpoint", "must be an http:// or https:// URL", _shown(config.endpoint))
    if float(config.pollInterval) <= 0:
        return ConfigError(f"{path}.pollInterval", "poll interval must be greater than 0")
    tls = config.tls
    if tls is not None and bool(tls.cert) != bool(tls.key):
        return ConfigError(f"{path}.tls", "cert and key must be set together")
    return None


def _credentials(url: str) -> tuple[bytes, bytes | None]:
    """
    The URL to ask without its user info, and that user info as a basic
    Authorization value (what Go's HTTP client makes of it).
    """
    parts = urlsplit(url)
    userInfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url.encode("ascii"), None
    user, _, password = userInfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode("utf-8"))
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return bare.encode("ascii"), b"Basic " + token


def _shown(url: str) -> str:
    """
    The endpoint as logged and reported: without user info or query string,
    which may carry credentials.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def get(agent: Any, url: bytes, headers: Headers, failure: str) -> tuple[int, bytes]:
    """
    GET C{url} with C{agent}: the status and the body. A request that fails
    raises L{SourceError} saying C{failure} and why; a cancelled one raises
    C{CancelledError}. Shared by the providers that read HTTP sources.
    """
    try:
        response = await agent.request(b"GET", url, headers)
        body = await readBody(response)
    except (SourceError, defer.CancelledError):
        raise
    except Exception as e:
        if _cancelled(e):
            raise defer.CancelledError() from None
        raise SourceError(f"{failure}: {_reason(e)}") from None
    return response.code, body


def _cancelled(e: BaseException) -> bool:
    """
    Whether a failed request was cancelled (Twisted's HTTP client wraps the
    cancellation in C{ResponseNeverReceived} or C{ResponseFailed}).
    """
    reasons = getattr(e, "reasons", None)
    if reasons:
        return any(_cancelled(reason.value) for reason in reasons)
    return isinstance(e, defer.CancelledError)


def _reason(e: BaseException) -> str:
    """
    A one-line reason for a failed request: the first wrapped failure of
    Twisted's C{ResponseNeverReceived}/C{ResponseFailed}, or the error itself.
    """
    reasons = getattr(e, "reasons", None)
    if reasons:
        inner = reasons[0].value
        if isinstance(inner, internetError.ConnectionDone):
            return "connection closed before a complete answer"
        return _reason(inner)
    if isinstance(e, internetError.TimeoutError):
        return "connection timed out"
    text = str(e).strip()
    name = type(e).__name__
    return f"{name}: {text}" if text else name
