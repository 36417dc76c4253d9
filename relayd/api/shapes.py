"""
The JSON shapes of the REST API, as Traefik v3 writes them: configuration
objects encoded with Go's C{omitempty} rules and the keys users write, plus
the runtime fields (status, errors, who uses what, server status) of routers,
services, middlewares and entrypoints, the overview and the raw data.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime, timezone
from typing import Any, Mapping

import attrs

from relayd.config.schema import fieldKeys, isModel, toRaw
from relayd.config.static import StaticConfig
from relayd.config.types import Duration
from relayd.runtime.build import DISABLED, WARNING, ObjectInfo, Runtime
from relayd.tls.hosts import DEFAULT_OPTIONS

# Traefik's names for its providers (the Go field names of its static
# configuration), in the order it lists them.
PROVIDER_NAMES: tuple[str, ...] = (
    "Docker",
    "Swarm",
    "File",
    "KubernetesIngress",
    "KubernetesCRD",
    "KubernetesGateway",
    "Rest",
    "Rancher",
    "ConsulCatalog",
    "Consul",
    "Etcd",
    "ZooKeeper",
    "Redis",
    "HTTP",
)


def _isOptional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _defaultOf(a: attrs.Attribute) -> Any:
    default: Any = a.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


def _goEmpty(a: attrs.Attribute, value: Any) -> bool:
    """
    Whether Go's C{omitempty} leaves this field out. Optional fields are Go
    pointers (left out only when unset); booleans that default to true are
    pointers in Traefik too; sections are kept; other values are left out
    when they are their type's zero value.
    """
    if value is None:
        return True
    if _isOptional(a.type) or isModel(type(value)):
        return False
    if isinstance(value, bool):
        return not value and _defaultOf(a) is not True
    if isinstance(value, (str, int, float, tuple, list, Mapping)):
        return not value
    return False


def goJSON(obj: Any) -> Any:
    """
    Plain JSON-able data for a configuration value, encoded as Traefik's API
    encodes its Go structures: the keys users write, zero values left out,
    durations in Go's notation (C{"100ms"}).
    """
    if isModel(type(obj)):
        cls = type(obj)
        keys = fieldKeys(cls)  # also resolves the annotations
        result: dict[str, Any] = {}
        for a, key in zip(attrs.fields(cls), keys):
            value = getattr(obj, a.name)
            if not _goEmpty(a, value):
                result[key] = goJSON(value)
        return result
    if isinstance(obj, Mapping):
        return {str(k): goJSON(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [goJSON(v) for v in obj]
    if isinstance(obj, Duration):
        return toRaw(obj)
    return obj


def encode(data: Any) -> bytes:
    """
    JSON as Go's C{json.Encoder} writes it: compact, one trailing newline,
    with C{<}, C{>}, C{&}, U+2028 and U+2029 escaped.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return (text + "\n").encode("utf-8")


def _info(result: dict[str, Any], info: ObjectInfo, users: str | None, usedBy: list[str] | None = None) -> dict[str, Any]:
    """
    Add the runtime fields Traefik's C{*Info} structures add: C{error},
    C{status} and C{usedBy} (services, middlewares) or C{using} (routers).
    """
    if info.errors:
        result["error"] = list(info.errors)
    result["status"] = info.status
    if users == "usedBy":
        names = usedBy if usedBy is not None else info.usedBy
        if names:
            result["usedBy"] = list(names)
    if users == "using" and info.using:
        result["using"] = list(info.using)
    return result


def usedByMap(runtime: Runtime, layer: str, kind: str) -> dict[str, list[str]]:
    """
    The routers of a layer that name each service (C{kind} C{"services"}) or
    middleware (C{"middlewares"}) in their configuration, sorted: Traefik's
    C{usedBy}, which counts routers whatever their status and leaves out
    services that use services.
    """
    routers: Mapping[str, ObjectInfo] = getattr(runtime, "routers" if layer == "http" else layer + "Routers")
    users: dict[str, list[str]] = {}
    for name in sorted(routers):
        config = routers[name].config
        targets = (config.service,) if kind == "services" else getattr(config, "middlewares", ())
        for target in targets:
            names = users.setdefault(target, [])
            if name not in names:
                names.append(name)
    return users


def _routerConfig(info: ObjectInfo, defaultTLSOptions: bool) -> dict[str, Any]:
    config = goJSON(info.config)
    # Traefik reports the effective priority (the rule's length by default).
    if info.priority:
        config["priority"] = info.priority
        order = fieldKeys(type(info.config))
        config = {key: config[key] for key in order if key in config}
    if defaultTLSOptions and "tls" in config and not config["tls"].get("options"):
        config["tls"] = {"options": DEFAULT_OPTIONS, **config["tls"]}
    return config


def _named(result: dict[str, Any], name: str, info: ObjectInfo) -> dict[str, Any]:
    result["name"] = name
    result["provider"] = info.provider
    return result


def routerShape(info: ObjectInfo, layer: str = "http", usedBy: list[str] | None = None) -> dict[str, Any]:
    """
    One router as C{/api/{http,tcp,udp}/routers} shows it.
    """
    result = _named(_info(_routerConfig(info, layer == "http"), info, "using"), info.name, info)
    if layer != "udp":
        result["priorityStr"] = str(info.priority)
    return result


def serviceShape(info: ObjectInfo, layer: str = "http", usedBy: list[str] | None = None) -> dict[str, Any]:
    """
    One service as C{/api/{http,tcp,udp}/services} shows it.
    """
    result = _named(_info(goJSON(info.config), info, "usedBy", usedBy), info.name, info)
    result["type"] = info.kind.lower()
    if layer != "udp" and info.serverStatus:
        result["serverStatus"] = dict(info.serverStatus)
    return result


def middlewareShape(info: ObjectInfo, layer: str = "http", usedBy: list[str] | None = None) -> dict[str, Any]:
    """
    One middleware as C{/api/{http,tcp}/middlewares} shows it.
    """
    result = _named(_info(goJSON(info.config), info, "usedBy", usedBy), info.name, info)
    result["type"] = info.kind.lower()
    return result


def entryPointShape(name: str, entryPoint: Any) -> dict[str, Any]:
    """
    One entrypoint: its static configuration and its name.
    """
    result = goJSON(entryPoint)
    result["name"] = name
    return result


def rawData(runtime: Runtime) -> dict[str, Any]:
    """
    C{/api/rawdata}: every object by full name, without the names and types
    the list endpoints add; empty sections left out.
    """

    def section(
        infos: Mapping[str, ObjectInfo],
        users: str,
        router: bool = False,
        servers: bool = False,
        usedBy: Mapping[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        result = {}
        for name in sorted(infos):
            info = infos[name]
            config = _routerConfig(info, False) if router else goJSON(info.config)
            data = _info(config, info, users, usedBy.get(name, []) if usedBy is not None else None)
            if servers and info.serverStatus:
                data["serverStatus"] = dict(info.serverStatus)
            result[name] = data
        return result

    sections = {
        "routers": section(runtime.routers, "using", router=True),
        "middlewares": section(runtime.middlewares, "usedBy", usedBy=usedByMap(runtime, "http", "middlewares")),
        "services": section(runtime.services, "usedBy", servers=True, usedBy=usedByMap(runtime, "http", "services")),
        "tcpRouters": section(runtime.tcpRouters, "using", router=True),
        "tcpMiddlewares": section(runtime.tcpMiddlewares, "usedBy", usedBy=usedByMap(runtime, "tcp", "middlewares")),
        "tcpServices": section(runtime.tcpServices, "usedBy", servers=True, usedBy=usedByMap(runtime, "tcp", "services")),
        "udpRouters": section(runtime.udpRouters, "using"),
        "udpServices": section(runtime.udpServices, "usedBy", usedBy=usedByMap(runtime, "udp", "services")),
    }
    return {key: value for key, value in sections.items() if value}


def _section(infos: Mapping[str, ObjectInfo]) -> dict[str, int]:
    return {
        "total": len(infos),
        "warnings": sum(1 for info in infos.values() if info.status == WARNING),
        "errors": sum(1 for info in infos.values() if info.status == DISABLED),
    }


def providerNames(static: StaticConfig) -> list[str]:
    """
    The configured providers under Traefik's names (C{File}, C{Docker}, ...).
    """
    byLower = {name.lower(): name for name in PROVIDER_NAMES}
    enabled = static.providers.enabled()
    names = [name for name in PROVIDER_NAMES if name.lower() in enabled]
    names += [name[:1].upper() + name[1:] for name in enabled if name not in byLower]
    return names


def overview(runtime: Runtime, static: StaticConfig) -> dict[str, Any]:
    """
    C{/api/overview}: counts per section, the features and the providers.
    """
    metrics = ""
    if static.metrics is not None and static.metrics.prometheus is not None:
        metrics = "Prometheus"
    result: dict[str, Any] = {
        "http": {
            "routers": _section(runtime.routers),
            "services": _section(runtime.services),
            "middlewares": _section(runtime.middlewares),
        },
        "tcp": {
            "routers": _section(runtime.tcpRouters),
            "services": _section(runtime.tcpServices),
            "middlewares": _section(runtime.tcpMiddlewares),
        },
        "udp": {
            "routers": _section(runtime.udpRouters),
            "services": _section(runtime.udpServices),
        },
        # relayd has no tracing yet.
        "features": {"tracing": "", "metrics": metrics, "accessLog": static.accessLog is not None},
    }
    providers = providerNames(static)
    if providers:
        result["providers"] = providers
    return result


def rfc3339(seconds: float) -> str:
    """
    A POSIX time as Go writes a C{time.Time} in JSON (RFC 3339, UTC).
    """
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def version(versionString: str, codename: str, startDate: float, disableDashboardAd: bool) -> dict[str, Any]:
    """
    C{/api/version}: the first two keys capitalised, as in Traefik.
    """
    result: dict[str, Any] = {"Version": versionString, "Codename": codename, "startDate": rfc3339(startDate)}
    if disableDashboardAd:
        result["disableDashboardAd"] = True
    return result
