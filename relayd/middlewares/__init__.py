"""
Middleware kinds, one registry: a kind name maps to the function that wraps the
next handler. Adding a kind is one module plus one entry here.

The contract for a kind's module:

  - C{build(context, info, next, chain)} returns an L{IHTTPHandler} wrapping
    C{next}; C{info.config.config()} is the kind's configuration (a model from
    L{relayd.config.middlewares}); raise L{BuildError} if it cannot be built
    (the middleware is then disabled with that error in its status, and so is
    every router using it).
  - C{handler.handle(request)} gets a L{relayd.entrypoints.RelaydRequest}
    whose C{request.relayd} (a L{relayd.entrypoints.RequestContext}) carries
    the path to forward (C{forwardPath}, escaped and normalised) and
    C{rawQuery}, which path middlewares rewrite; request headers are changed in
    C{request.requestHeaders}; response headers are changed by appending a
    callable to C{request.relayd.beforeResponse}, called with the request just
    before the status line goes out, whoever produces the response. A handler
    either calls C{next.handle(request)} or answers the request itself.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from relayd.runtime.build import BuildContext, BuildError, ObjectInfo

MiddlewareBuilder = Callable[[BuildContext, ObjectInfo, Any, tuple[str, ...]], Any]


def _chain(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    return context.middlewareChain(info.config.chain.middlewares, info, next, chain)


# kind -> builder, or "module:function" for kinds whose module is imported on use.
MIDDLEWARE_BUILDERS: dict[str, MiddlewareBuilder | str] = {
    "chain": _chain,
    "stripPrefix": "relayd.middlewares.paths:buildStripPrefix",
    "stripPrefixRegex": "relayd.middlewares.paths:buildStripPrefixRegex",
    "addPrefix": "relayd.middlewares.paths:buildAddPrefix",
    "replacePath": "relayd.middlewares.paths:buildReplacePath",
    "replacePathRegex": "relayd.middlewares.paths:buildReplacePathRegex",
    "redirectScheme": "relayd.middlewares.redirect:buildRedirectScheme",
    "redirectRegex": "relayd.middlewares.redirect:buildRedirectRegex",
    "headers": "relayd.middlewares.headers:buildHeaders",
    "buffering": "relayd.middlewares.buffering:buildBuffering",
    "basicAuth": "relayd.middlewares.auth:buildBasicAuth",
    "passTLSClientCert": "relayd.middlewares.tlsclientcert:buildPassTLSClientCert",
}


def _resolve(kind: str) -> MiddlewareBuilder | None:
    builder = MIDDLEWARE_BUILDERS.get(kind)
    if isinstance(builder, str):
        module, _, name = builder.partition(":")
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            return None
    return builder


def buildMiddleware(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    Wrap C{next} in the middleware described by C{info}.

    @raise BuildError: if its kind has no runtime yet or it cannot be built.
    """
    builder = _resolve(info.kind)
    if builder is None:
        raise BuildError(f"the {info.kind} middleware is not supported by this relayd yet")
    return builder(context, info, next, chain)
