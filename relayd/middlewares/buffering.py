"""
The buffering middleware: read the whole request body before forwarding it
(in memory up to memRequestBodyBytes, in a temporary file beyond), and answer
413 when it is larger than maxRequestBodyBytes, as Traefik does. A body whose
announced length is already too large is refused before any of it is read.

Not yet here: maxResponseBodyBytes/memResponseBodyBytes (responses are
streamed) and retryExpression; both are accepted, and a non-default value is
reported as a warning in the middleware's status.
"""

from __future__ import annotations

import tempfile
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext, ObjectInfo

_PIECE = 64 * 1024


class BufferedBody:
    """
    A request body read in full, replayed to its consumer with the producer
    interface the upstream side expects.
    """

    expectContinue = False
    continueSent = True
    complete = True
    failed = None

    def __init__(self, spool: Any, length: int, trailers: Any, reactor: Any) -> None:
        self.spool = spool
        self.length = length
        self.received = length
        self.trailers = trailers
        self.reactor = reactor
        self._consumer: Any = None
        self._paused = False
        self._scheduled = False

    @property
    def consumed(self) -> bool:
        return self._consumer is not None

    def deliver(self, consumer: Any) -> None:
        self._consumer = consumer
        self.spool.seek(0)
        self._pump()

    def _pump(self) -> None:
        self._scheduled = False
        consumer = self._consumer
        while not self._paused and consumer is not None:
            data = self.spool.read(_PIECE)
            if not data:
                self.spool.close()
                self._consumer = None
                consumer.bodyEnd(self.trailers)
                return
            consumer.bodyData(data)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            if not self._scheduled and self._consumer is not None:
                self._scheduled = True
                self.reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self._consumer = None
        self.spool.close()

    # What the client connection calls on the body it read (all of it, here).

    def _received(self, data: bytes) -> None:
        pass

    def _completed(self, trailers: Any) -> None:
        pass

    def _fail(self, reason: Failure) -> None:
        self.stopProducing()

    def _drop(self) -> None:
        pass


class _Reader:
    """
    Consumes a request body into a spool, enforcing the maximum.
    """

    def __init__(self, handler: BufferingHandler, request: Any) -> None:
        self.handler = handler
        self.request = request
        self.size = 0
        self.spool = tempfile.SpooledTemporaryFile(max_size=handler.memory or 1)
        self.done = False

    def bodyData(self, data: bytes) -> None:
        if self.done:
            return
        self.size += len(data)
        limit = self.handler.maximum
        if limit and self.size > limit:
            self.done = True
            self.spool.close()
            self.handler.tooLarge(self.request)
            return
        self.spool.write(data)

    def bodyEnd(self, trailers: Any) -> None:
        if self.done:
            return
        self.done = True
        request = self.request
        if request.finished or request._disconnected:
            self.spool.close()
            return
        request.body = BufferedBody(self.spool, self.size, trailers, self.handler.reactor)
        self.handler.next.handle(request)

    def bodyFailed(self, reason: Failure) -> None:
        self.done = True
        self.spool.close()


@implementer(IHTTPHandler)
class BufferingHandler:
    _log = Logger()

    def __init__(self, next: Any, maximum: int, memory: int, reactor: Any) -> None:
        self.next = next
        self.maximum = maximum
        self.memory = memory
        self.reactor = reactor

    def handle(self, request: Any) -> None:
        body = request.body
        if body.length == 0:
            self.next.handle(request)
            return
        if self.maximum and body.length is not None and body.length > self.maximum:
            self.tooLarge(request)
            return
        body.deliver(_Reader(self, request))

    def tooLarge(self, request: Any) -> None:
        context = request.relayd
        self._log.info(
            "413: request body over {limit} bytes (router={router})",
            limit=self.maximum,
            router=getattr(context, "router", ""),
        )
        plainResponse(request, 413)


def buildBuffering(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    config = info.config.config()
    if config.maxResponseBodyBytes or config.retryExpression:
        info.warn("maxResponseBodyBytes and retryExpression are not supported yet; responses are streamed")
    reactor = context.reactor if context is not None and context.reactor is not None else globalReactor
    return BufferingHandler(next, config.maxRequestBodyBytes, config.memRequestBodyBytes, reactor)
