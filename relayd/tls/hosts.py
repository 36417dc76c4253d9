"""
Which TLS options each host name gets, decided from the TLS routers as
Traefik decides it: per entrypoint, from the hosts of each router's Host
matchers, with conflicting routers falling back to the default options; and
what routers must show in their status about it.
"""

from __future__ import annotations

from typing import Callable, Mapping

import attrs
from twisted.logger import Logger

from relayd.runtime.rules import hostsOf

DEFAULT_OPTIONS = "default"

_log = Logger()


@attrs.frozen
class RouterTLSUse:
    """
    A TLS router as seen on one entrypoint: its rule and the name of the TLS
    options it asks for there (C{default}, or qualified as C{name@provider}).
    """

    router: str
    entryPoint: str
    rule: str
    options: str = DEFAULT_OPTIONS


@attrs.frozen
class RouterTLSProblem:
    """
    What the TLS runtime says about a router: C{fatal} ones disable it.
    """

    message: str
    fatal: bool


def normalizeHost(host: str | None) -> str:
    """
    A host name as certificates and rules are indexed: lower case, without a
    port or the brackets of an IPv6 address.
    """
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host[1:]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host


def mapHosts(
    uses: list[RouterTLSUse],
    options: Mapping[str, object],
    broken: Mapping[str, str],
) -> tuple[
    dict[str | None, dict[str, str]],
    dict[tuple[str, str], str],
    dict[str, list[RouterTLSProblem]],
]:
    """
    Which options each host name gets, per entrypoint and over all of them,
    as Traefik decides it from the TLS routers: every host of a router's Host
    matchers gets the router's options; a host that routers map to different
    options gets C{default}, and so do all the hosts of those routers, with a
    warning on each; a router without a Host matcher cannot choose options.
    """
    problems: dict[str, list[RouterTLSProblem]] = {}

    def report(router: str, message: str, fatal: bool) -> None:
        found = problems.setdefault(router, [])
        problem = RouterTLSProblem(message, fatal)
        if problem not in found:
            found.append(problem)

    for use in uses:
        if use.options not in options:
            if use.options in broken:
                report(use.router, f'the TLS options "{use.options}" are invalid: {broken[use.options]}', True)
            else:
                report(use.router, f'the TLS options "{use.options}" do not exist', True)

    byEntryPoint: dict[str, list[RouterTLSUse]] = {}
    for use in uses:
        byEntryPoint.setdefault(use.entryPoint, []).append(use)
    hostOptions: dict[str | None, dict[str, str]] = {}
    routerOptions: dict[tuple[str, str], str] = {}
    for entryPoint in sorted(byEntryPoint):
        hosts, resolved = _resolveEntryPoint(entryPoint, byEntryPoint[entryPoint], report)
        hostOptions[entryPoint] = hosts
        routerOptions.update({(router, entryPoint): name for router, name in resolved.items()})
    hostOptions[None], _ = _resolveEntryPoint(None, uses, lambda router, message, fatal: None)
    return hostOptions, routerOptions, problems


def _resolveEntryPoint(
    entryPoint: str | None,
    uses: list[RouterTLSUse],
    report: Callable[[str, str, bool], None],
) -> tuple[dict[str, str], dict[str, str]]:
    domains = {use.router: hostsOf(use.rule) for use in uses}
    conflicting: set[str] = set()
    byHost: dict[str, dict[str, list[str]]] = {}
    where = f" on entryPoint {entryPoint}" if entryPoint else ""
    for use in sorted(uses, key=lambda u: u.router):
        hosts = domains[use.router]
        if not hosts:
            if use.options != DEFAULT_OPTIONS:
                conflicting.add(use.router)
                report(
                    use.router,
                    f"no domain found in rule {use.rule!r}: the TLS options "
                    f'"{use.options}" cannot be applied (they are chosen by host name)',
                    False,
                )
            continue
        for host in hosts:
            byHost.setdefault(host, {}).setdefault(use.options, []).append(use.router)
    for host in sorted(byHost):
        groups = byHost[host]
        if len(groups) < 2:
            continue
        names = sorted({router for routers in groups.values() for router in routers})
        conflicting.update(names)
        if entryPoint is not None:
            _log.error(
                "TLS options: host {host}{where} is served by routers with different TLS options "
                "({routers}); the default TLS options apply to them",
                host=host,
                where=where,
                routers=", ".join(names),
            )
        for router in names:
            report(
                router,
                f"the TLS options of this router conflict with another router's for host {host}"
                f"{where}; the default TLS options are used instead",
                False,
            )
    resolved = {
        use.router: DEFAULT_OPTIONS if use.router in conflicting else use.options for use in uses
    }
    candidates: dict[str, set[str]] = {}
    for use in uses:
        for host in domains[use.router]:
            candidates.setdefault(host, set()).add(resolved[use.router])
    chosen = {
        host: next(iter(names)) if len(names) == 1 else DEFAULT_OPTIONS
        for host, names in candidates.items()
    }
    return chosen, resolved
