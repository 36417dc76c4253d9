"""
The internal provider: routers relayd adds itself, named C{...@internal}: ping,
the API and dashboard (C{api.insecure}), Prometheus metrics, entrypoint
redirections, and the welcome route of the embedded default. Same names,
rules and priorities as Traefik's.
"""

from __future__ import annotations

from typing import Any

from relayd.config.dynamic import DynamicConfig, decodeDynamic
from relayd.config.static import StaticConfig
from relayd.runtime.routing import MAX_PRIORITY


def internalConfig(static: StaticConfig, welcome: bool = False) -> DynamicConfig:
    """
    The internal routers implied by the static configuration.
    """
    routers: dict[str, Any] = {}
    middlewares: dict[str, Any] = {}
    if static.ping is not None and not static.ping.manualRouting:
        routers["ping"] = {
            "rule": "PathPrefix(`/ping`)",
            "entryPoints": [static.ping.entryPoint],
            "service": "ping@internal",
            "priority": MAX_PRIORITY,
        }
    api = static.api
    if api is not None and api.insecure:
        routers["api"] = {
            "rule": "PathPrefix(`/api`)",
            "entryPoints": ["traefik"],
            "service": "api@internal",
            "priority": MAX_PRIORITY - 1,
        }
        if api.dashboard:
            routers["dashboard"] = {
                "rule": "PathPrefix(`/`)",
                "entryPoints": ["traefik"],
                "service": "dashboard@internal",
                "priority": MAX_PRIORITY - 2,
                "middlewares": ["dashboard_redirect@internal", "dashboard_stripprefix@internal"],
            }
            middlewares["dashboard_redirect"] = {
                "redirectRegex": {
                    "regex": r"^(http:\/\/(\[[\w:.]+\]|[\w\._-]+)(:\d+)?)\/$",
                    "replacement": "${1}/dashboard/",
                    "permanent": True,
                }
            }
            middlewares["dashboard_stripprefix"] = {"stripPrefix": {"prefixes": ["/dashboard/", "/dashboard"]}}
    prometheus = static.metrics.prometheus if static.metrics is not None else None
    if prometheus is not None and not prometheus.manualRouting:
        routers["prometheus"] = {
            "rule": "PathPrefix(`/metrics`)",
            "entryPoints": [prometheus.entryPoint],
            "service": "prometheus@internal",
            "priority": MAX_PRIORITY,
        }
    for name, ep in static.entryPoints.items():
        redirections = ep.http.redirections
        if redirections is None or redirections.entryPoint is None:
            continue
        redirect = redirections.entryPoint
        target = redirect.to
        port = target[1:] if target.startswith(":") else static.entryPoints[target].parsedAddress.port
        # An entrypoint given as a Twisted endpoint has no port to redirect to.
        port = "" if str(port) == "0" else str(port)
        routerName = f"{name}-to-{target.lstrip(':')}"
        middlewares[f"redirect-{routerName}"] = {
            "redirectScheme": {"scheme": redirect.scheme, "port": port, "permanent": redirect.permanent}
        }
        routers[routerName] = {
            "rule": "HostRegexp(`^.+$`)",
            "entryPoints": [name],
            "middlewares": [f"redirect-{routerName}"],
            "service": "noop@internal",
            "priority": redirect.priority or MAX_PRIORITY - 1,
        }
    if welcome:
        routers["welcome"] = {
            "rule": "PathPrefix(`/`)",
            "service": "welcome@internal",
            "priority": 1,
        }
    return decodeDynamic({"http": {"routers": routers, "middlewares": middlewares}})
