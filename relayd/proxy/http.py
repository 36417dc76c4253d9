"""
Forwarding an HTTP request to an upstream server over HTTP/1.1 with a persistent
connection pool, and relaying the answer back: hop-by-hop headers removed,
X-Forwarded-* headers set, repeated headers kept in order, errors answered with
502/504 and never a traceback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from relayd.proxy.responses import badGateway

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def hopByHop(headers: Headers) -> set[bytes]:
    """
    The hop-by-hop header names of a message: the fixed list and those its
    Connection header names.
    """
    names = set(HOP_BY_HOP)
    for value in headers.getRawHeaders(b"connection", []):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                names.add(token)
    return names


def copyHeaders(source: Headers, drop: set[bytes]) -> Headers:
    result = Headers()
    for name, values in source.getAllRawHeaders():
        if name.lower() not in drop:
            result.setRawHeaders(name, list(values))
    return result


@implementer(IBodyProducer)
class _BytesProducer:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Relay(protocol.Protocol):
    """
    Writes an upstream response body to the client as it arrives.
    """

    def __init__(self, request: Any, done: defer.Deferred[None]) -> None:
        self.request = request
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        if not self.request.finished and not getattr(self.request, "_disconnected", False):
            self.request.write(data)

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


class Forwarder:
    """
    Sends requests upstream through one connection pool.
    """

    _log = Logger()

    def __init__(self, reactor: Any, pool: HTTPConnectionPool | None = None) -> None:
        self.reactor = reactor
        self.pool = pool or HTTPConnectionPool(reactor, persistent=True)
        self.agent = Agent(reactor, pool=self.pool)

    def close(self) -> defer.Deferred[None]:
        """
        Close the idle pooled connections.
        """
        return self.pool.closeCachedConnections()

    def forward(self, request: Any, serverURL: str, passHostHeader: bool = True) -> defer.Deferred[None]:
        """
        Relay C{request} to the server at C{serverURL}; the Deferred fires when
        the answer has been relayed (or an error answered).
        """
        context = request.relayd
        target = urlsplit(serverURL)
        path = context.forwardPath
        if not path.startswith("/"):
            path = "/" + path
        basePath = target.path.rstrip("/")
        uri = (basePath + path).encode("utf-8") if basePath else path.encode("utf-8")
        if context.rawQuery:
            uri += b"?" + context.rawQuery.encode("utf-8")
        url = f"{target.scheme}://{target.netloc}".encode() + uri
        headers = copyHeaders(request.requestHeaders, hopByHop(request.requestHeaders))
        self._forwardedHeaders(request, headers)
        host = request.getHeader(b"host")
        if passHostHeader and host:
            headers.setRawHeaders(b"host", [host])
        else:
            headers.removeHeader(b"host")
        request.content.seek(0)
        data = request.content.read()
        body = _BytesProducer(data) if data or request.getHeader(b"content-length") else None
        d = self.agent.request(request.method, url, headers, body)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        d.addCallback(self._relay, request)
        d.addErrback(self._failed, request, serverURL)
        return d

    def _forwardedHeaders(self, request: Any, headers: Headers) -> None:
        """
        Append the client address to X-Forwarded-For (the other X-Forwarded-*
        headers were settled at the entrypoint), unless a middleware asked
        for none.
        """
        client = request.relayd.clientIP
        if not client or getattr(request, "relaydOmitXForwardedFor", False):
            return
        previous = headers.getRawHeaders(b"x-forwarded-for")
        value = ", ".join([v.decode("latin-1") for v in previous or []] + [client])
        headers.setRawHeaders(b"x-forwarded-for", [value.encode("latin-1")])

    def _relay(self, response: Any, request: Any) -> defer.Deferred[None] | None:
        if request.finished or getattr(request, "_disconnected", False):
            response.deliverBody(protocol.Protocol())
            return None
        request.setResponseCode(response.code, response.phrase)
        drop = hopByHop(response.headers)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in drop:
                request.responseHeaders.setRawHeaders(name, list(values))
        if response.length is not None and response.length is not _UNKNOWN and request.method != b"HEAD":
            request.responseHeaders.setRawHeaders(b"content-length", [str(response.length).encode()])
        done: defer.Deferred[None] = defer.Deferred()
        response.deliverBody(_Relay(request, done))

        def finish(_: object) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.finish()

        def broken(failure: Failure) -> None:
            self._log.warn(
                "upstream response body broke off: {error}", error=failure.getErrorMessage()
            )
            if not request.finished and request.channel is not None:
                request.channel.loseConnection()

        done.addCallbacks(finish, broken)
        return done

    def _failed(self, failure: Failure, request: Any, serverURL: str) -> None:
        if failure.check(defer.CancelledError):
            return
        context = request.relayd
        self._log.warn(
            "502 Bad Gateway: {error} (router={router}, service={service}, upstream={upstream})",
            error=failure.getErrorMessage(),
            router=context.router,
            service=context.service,
            upstream=serverURL,
        )
        badGateway(request)


from twisted.web.iweb import UNKNOWN_LENGTH as _UNKNOWN  # noqa: E402
