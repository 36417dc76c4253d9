"""
Service kinds, one registry: a kind name maps to the function that builds its
handler. Adding a kind is one module plus one entry here.
"""

from __future__ import annotations

from typing import Any, Callable

from relayd.runtime.build import BuildContext, BuildError, ObjectInfo
from relayd.services.loadbalancer import buildFailover, buildLoadBalancer, buildWeighted

ServiceBuilder = Callable[[BuildContext, ObjectInfo, tuple[str, ...]], Any]

SERVICE_BUILDERS: dict[str, ServiceBuilder] = {
    "loadBalancer": buildLoadBalancer,
    "weighted": buildWeighted,
    "failover": buildFailover,
}


def buildService(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    """
    Build the handler of a service.

    @raise BuildError: if its kind has no runtime yet or it cannot be built.
    """
    builder = SERVICE_BUILDERS.get(info.kind)
    if builder is None:
        raise BuildError(f"the {info.kind} service kind is not supported by this relayd yet")
    return builder(context, info, chain)
