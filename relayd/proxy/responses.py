"""
The answers relayd gives itself (404, 502, 503, ...): short plain-text bodies,
never a traceback.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from twisted.web import http


def plainResponse(request: Any, code: int, body: str | None = None) -> None:
    """
    Answer C{request} with C{code} and a short text body (Go's wording for 404,
    the reason phrase otherwise), unless the answer has already started.
    """
    if getattr(request, "startedWriting", False) or request.finished or getattr(request, "_disconnected", False):
        return
    if body is None:
        body = "404 page not found\n" if code == 404 else f"{HTTPStatus(code).phrase}\n"
    data = body.encode("utf-8")
    request.setResponseCode(code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def notFound(request: Any) -> None:
    plainResponse(request, http.NOT_FOUND)


def badGateway(request: Any) -> None:
    plainResponse(request, http.BAD_GATEWAY)


def serviceUnavailable(request: Any) -> None:
    plainResponse(request, http.SERVICE_UNAVAILABLE)
