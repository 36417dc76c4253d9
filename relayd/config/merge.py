"""
Combining dynamic configurations: several sources inside one provider (first
definition wins), and all providers into one (names qualified as
C{name@provider}, references resolved within the referrer's provider unless they
name another).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from relayd.config.dynamic import (
    DynamicConfig,
    HTTPConfig,
    TCPConfig,
    TLSConfig,
    UDPConfig,
)
from relayd.config.errors import ConfigError
from relayd.config.types import FrozenMap

DEFAULT_TLS_OPTIONS = "default"

_SECTIONS = (
    ("http", ("routers", "services", "middlewares", "serversTransports")),
    ("tcp", ("routers", "services", "middlewares", "serversTransports")),
    ("udp", ("routers", "services")),
)


def mergeFirstWins(sources: Sequence[tuple[str, DynamicConfig]]) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    Merge the configurations of several sources of one provider (the files of a
    directory): an object defined twice keeps its first definition, and the
    second is reported.
    """
    if len(sources) == 1:
        return sources[0][1], []
    errors: list[ConfigError] = []
    sections: dict[str, dict[str, dict[str, Any]]] = {
        protocol: {kind: {} for kind in kinds} for protocol, kinds in _SECTIONS
    }
    origins: dict[tuple[str, str, str], str] = {}
    certificates: list[Any] = []
    options: dict[str, Any] = {}
    stores: dict[str, Any] = {}
    tlsOrigins: dict[tuple[str, str], str] = {}
    for origin, config in sources:
        for protocol, kinds in _SECTIONS:
            section = getattr(config, protocol)
            for kind in kinds:
                for name, value in getattr(section, kind).items():
                    target = sections[protocol][kind]
                    if name in target:
                        if target[name] != value:
                            first = origins[(protocol, kind, name)]
                            errors.append(
                                ConfigError(
                                    f"{protocol}.{kind}.{name}",
                                    f"already defined in {first}; this definition is ignored",
                                    origin,
                                )
                            )
                        continue
                    target[name] = value
                    origins[(protocol, kind, name)] = origin
        for cert in config.tls.certificates:
            if cert not in certificates:
                certificates.append(cert)
        for mapping, values, kind in ((options, config.tls.options, "options"), (stores, config.tls.stores, "stores")):
            for name, value in values.items():
                if name in mapping:
                    if mapping[name] != value:
                        first = tlsOrigins[(kind, name)]
                        errors.append(
                            ConfigError(
                                f"tls.{kind}.{name}",
                                f"already defined in {first}; this definition is ignored",
                                origin,
                            )
                        )
                    continue
                mapping[name] = value
                tlsOrigins[(kind, name)] = origin
    merged = DynamicConfig(
        http=HTTPConfig(**{k: FrozenMap(v) for k, v in sections["http"].items()}),
        tcp=TCPConfig(**{k: FrozenMap(v) for k, v in sections["tcp"].items()}),
        udp=UDPConfig(**{k: FrozenMap(v) for k, v in sections["udp"].items()}),
        tls=TLSConfig(certificates=tuple(certificates), options=FrozenMap(options), stores=FrozenMap(stores)),
    )
    return merged, errors


def qualifyName(name: str, provider: str) -> str:
    """
    C{name@provider}, unless the name already names a provider.
    """
    if not name or "@" in name:
        return name
    return f"{name}@{provider}"


def splitName(qualified: str) -> tuple[str, str]:
    """
    C{("name", "provider")} for C{name@provider}.
    """
    name, _, provider = qualified.rpartition("@")
    return (name, provider) if name else (qualified, "")


def _tlsOption(name: str, provider: str) -> str:
    if not name or name == DEFAULT_TLS_OPTIONS:
        return name
    return qualifyName(name, provider)


def _names(names: Iterable[str], provider: str) -> tuple[str, ...]:
    return tuple(qualifyName(n, provider) for n in names)


def _qualifyRouter(router: Any, p: str) -> Any:
    """
    An HTTP or TCP router with its service, middlewares and TLS options qualified.
    """
    tls = router.tls
    if tls is not None and tls.options:
        tls = attrs.evolve(tls, options=_tlsOption(tls.options, p))
    return attrs.evolve(
        router,
        service=qualifyName(router.service, p),
        middlewares=_names(router.middlewares, p),
        tls=tls,
    )


def _weighted(config: Any, p: str) -> Any:
    return attrs.evolve(
        config, services=tuple(attrs.evolve(s, name=qualifyName(s.name, p)) for s in config.services)
    )


def _loadBalancer(config: Any, p: str) -> Any:
    if not hasattr(config, "serversTransport"):
        return config
    return attrs.evolve(config, serversTransport=qualifyName(config.serversTransport, p))


def _mirroring(config: Any, p: str) -> Any:
    return attrs.evolve(
        config,
        service=qualifyName(config.service, p),
        mirrors=tuple(attrs.evolve(m, name=qualifyName(m.name, p)) for m in config.mirrors),
    )


def _failover(config: Any, p: str) -> Any:
    return attrs.evolve(config, service=qualifyName(config.service, p), fallback=qualifyName(config.fallback, p))


def _chain(config: Any, p: str) -> Any:
    return attrs.evolve(config, middlewares=_names(config.middlewares, p))


def _errors(config: Any, p: str) -> Any:
    return attrs.evolve(config, service=qualifyName(config.service, p))


# Where each kind of service or middleware refers to other objects.
_REFERENCES = {
    "loadBalancer": _loadBalancer,
    "weighted": _weighted,
    "highestRandomWeight": _weighted,
    "mirroring": _mirroring,
    "failover": _failover,
    "chain": _chain,
    "errors": _errors,
}


def _qualifyKind(value: Any, p: str) -> Any:
    """
    A service or middleware (HTTP, TCP or UDP) with its references qualified.
    """
    kind = value.kind()
    qualify = _REFERENCES.get(kind)
    if qualify is None:
        return value
    return attrs.evolve(value, **{kind: qualify(getattr(value, kind), p)})


def _map(values: FrozenMap[str, Any], p: str, fn: Any) -> dict[str, Any]:
    return {qualifyName(name, p): fn(value, p) for name, value in values.items()}


def _keep(value: Any, p: str) -> Any:
    return value


def qualify(config: DynamicConfig, provider: str) -> DynamicConfig:
    """
    The same configuration with every object named C{name@provider} and every
    unqualified reference resolved inside C{provider}.
    """
    http = config.http
    tcp = config.tcp
    udp = config.udp
    options = {_tlsOption(n, provider): v for n, v in config.tls.options.items()}
    return DynamicConfig(
        http=HTTPConfig(
            routers=FrozenMap(_map(http.routers, provider, _qualifyRouter)),
            services=FrozenMap(_map(http.services, provider, _qualifyKind)),
            middlewares=FrozenMap(_map(http.middlewares, provider, _qualifyKind)),
            serversTransports=FrozenMap(_map(http.serversTransports, provider, _keep)),
        ),
        tcp=TCPConfig(
            routers=FrozenMap(_map(tcp.routers, provider, _qualifyRouter)),
            services=FrozenMap(_map(tcp.services, provider, _qualifyKind)),
            middlewares=FrozenMap(_map(tcp.middlewares, provider, _keep)),
            serversTransports=FrozenMap(_map(tcp.serversTransports, provider, _keep)),
        ),
        udp=UDPConfig(
            routers=FrozenMap(
                {qualifyName(n, provider): attrs.evolve(r, service=qualifyName(r.service, provider)) for n, r in udp.routers.items()}
            ),
            services=FrozenMap(_map(udp.services, provider, _qualifyKind)),
        ),
        tls=attrs.evolve(config.tls, options=FrozenMap(options)),
    )


def mergeProviders(configs: Sequence[tuple[str, DynamicConfig]]) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    Qualify each provider's configuration and merge them. Qualified names cannot
    collide across providers; TLS certificates are pooled, and a TLS option or
    store defined by two providers keeps the first (in provider name order).
    """
    qualified = [
        (name, qualify(config, name)) for name, config in sorted(configs, key=lambda c: c[0])
    ]
    return mergeFirstWins([(f"provider {n}", c) for n, c in qualified]) if len(qualified) != 1 else (qualified[0][1], [])
