"""
Internal services (C{name@internal}): answered by relayd itself and reached
through routers like any other service.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Mapping

from zope.interface import implementer

from relayd import __version__
from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext


@implementer(IHTTPHandler)
class PingHandler:
    """
    C{200 OK}, or the terminating status code once shutdown has begun.
    """

    def __init__(self, state: Mapping[str, Any], terminatingStatusCode: int) -> None:
        self.state = state
        self.terminatingStatusCode = terminatingStatusCode

    def handle(self, request: Any) -> None:
        if self.state.get("terminating"):
            plainResponse(request, self.terminatingStatusCode)
        else:
            plainResponse(request, 200, "OK")


@implementer(IHTTPHandler)
class NoopHandler:
    """
    The service of routers whose middlewares always answer (redirections).
    """

    def handle(self, request: Any) -> None:
        plainResponse(request, 200, "")


@implementer(IHTTPHandler)
class WelcomeHandler:
    """
    The embedded default's page: what relayd is serving and where to go next.
    """

    def __init__(self, context: BuildContext) -> None:
        self.context = context

    def handle(self, request: Any) -> None:
        runtime = request.relayd.runtime
        rows = []
        for name, info in sorted(runtime.routers.items()):
            rule = html.escape(info.config.rule)
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td><code>{rule}</code></td>"
                f"<td>{html.escape(info.status)}</td><td>{html.escape('; '.join(info.errors))}</td></tr>"
            )
        entryPoints = "".join(
            f"<li>{html.escape(n)}: <code>{html.escape(ep.address)}</code></li>"
            for n, ep in runtime.static.entryPoints.items()
        )
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>relayd</title></head>
<body>
<h1>relayd {html.escape(__version__)} is running</h1>
<p>This is relayd's embedded default configuration. Write a <code>relayd.toml</code>
(Traefik's static configuration keys) and start <code>twistd -n relayd --config relayd.toml</code>
to route your own services. Health check: <a href="/ping">/ping</a>.</p>
<h2>Entrypoints</h2><ul>{entryPoints}</ul>
<h2>Routers (generation {runtime.generation})</h2>
<table border="1" cellpadding="4"><tr><th>name</th><th>rule</th><th>status</th><th>errors</th></tr>
{''.join(rows)}</table>
</body></html>
"""
        body = page.encode("utf-8")
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-length", str(len(body)).encode())
        if request.method != b"HEAD":
            request.write(body)
        request.finish()


def _lazy(target: str, state: Mapping[str, Any]) -> Callable[[BuildContext], Any]:
    """
    A factory that imports C{module:function} on first use and calls it with
    the build context and the service's shared state.
    """

    def factory(context: BuildContext) -> Any:
        import importlib

        moduleName, _, functionName = target.partition(":")
        return getattr(importlib.import_module(moduleName), functionName)(context, state)

    return factory


def internalServices(state: Mapping[str, Any]) -> dict[str, Callable[[BuildContext], Any]]:
    """
    The internal services, as factories from the build context. C{state} is
    the running service's shared dictionary (C{terminating}, C{startDate},
    C{metrics}, ...).
    """

    def ping(context: BuildContext) -> Any:
        code = context.static.ping.terminatingStatusCode if context.static.ping else 503
        return PingHandler(state, code)

    return {
        "ping@internal": ping,
        "noop@internal": lambda context: NoopHandler(),
        "welcome@internal": WelcomeHandler,
        # The REST API (and, under /dashboard/, the dashboard), as Traefik's
        # api@internal; dashboard@internal is the dashboard alone, behind the
        # insecure dashboard router's redirect and stripPrefix.
        "api@internal": _lazy("relayd.api.rest:apiService", state),
        "dashboard@internal": _lazy("relayd.api.dashboard:dashboardService", state),
        "prometheus@internal": _lazy("relayd.observability.metrics:prometheusService", state),
    }
