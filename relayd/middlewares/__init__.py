"""
Middleware kinds, one registry: a kind name maps to the function that wraps the
next handler. Adding a kind is one module plus one entry here.
"""

from __future__ import annotations

from typing import Any, Callable

from relayd.runtime.build import BuildContext, BuildError, ObjectInfo

MiddlewareBuilder = Callable[[BuildContext, ObjectInfo, Any, tuple[str, ...]], Any]


def _chain(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    return context.middlewareChain(info.config.chain.middlewares, info, next, chain)


MIDDLEWARE_BUILDERS: dict[str, MiddlewareBuilder] = {
    "chain": _chain,
}


def buildMiddleware(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    Wrap C{next} in the middleware described by C{info}.

    @raise BuildError: if its kind has no runtime yet or it cannot be built.
    """
    builder = MIDDLEWARE_BUILDERS.get(info.kind)
    if builder is None:
        raise BuildError(f"the {info.kind} middleware is not supported by this relayd yet")
    return builder(context, info, next, chain)
