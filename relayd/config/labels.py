"""
Configuration from labels (Docker, Rancher) and tags (Consul Catalog): Traefik's
flat C{traefik.http.routers.web.rule=...} keys decoded into the dynamic model,
and the defaults a label-based provider fills in for what the labels leave out
(a service named after the container, a router with the default rule, the
container's address as the server). Pure logic, no I/O: providers hand in the
labels and the facts they know about the container.

The grammar is Traefik's (paerser's): keys are case-insensitive after the
prefix; lists of values are comma-separated; lists of sections take C{[n]}
indices; map keys are path segments and keep their case; C{=true} enables an
empty section; C{loadbalancer.server.*} (singular) is the label-only form of the
first server, whose C{port} and C{scheme} are resolved against the container's
address by L{applyDefaults}. relayd also reads its own C{relayd.} prefix, which
wins over C{traefik.} for the same key.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from relayd.config.dynamic import (
    DynamicConfig,
    LoadBalancer,
    Router,
    Server,
    Service,
    TCPLoadBalancer,
    TCPServer,
    TCPService,
    UDPLoadBalancer,
    UDPServer,
    UDPService,
)
from relayd.config.errors import ConfigError, flatten
from relayd.config.gotemplate import Template, TemplateError, compileTemplate
from relayd.config.schema import decode, placeFlat
from relayd.config.types import FrozenMap

__all__ = [
    "NATIVE_PREFIX",
    "ServerHint",
    "LabelConfig",
    "decodeLabels",
    "applyDefaults",
    "labelProblem",
]

NATIVE_PREFIX = "relayd"

_PROTOCOLS = ("http", "tcp", "udp")
# The keys of the singular server form, per protocol; port and scheme exist only
# in labels and are resolved against the container's address.
_SERVER_KEYS = {
    "http": {"url": "url", "port": "port", "scheme": "scheme", "weight": "weight", "preservepath": "preservePath"},
    "tcp": {"port": "port", "tls": "tls", "weight": "weight"},
    "udp": {"port": "port", "weight": "weight"},
}
# Sections Traefik does not read from labels (they refer to other services or
# to files, which a container cannot own).
_NOT_IN_LABELS = {
    ("http", "services"): ("weighted", "mirroring", "failover", "highestrandomweight"),
    ("tcp", "services"): ("weighted",),
    ("udp", "services"): ("weighted",),
}
_INDEXED = re.compile(r"^(.+)\[([0-9]+)\]$")


def labelProblem(key: str, message: str) -> ConfigError:
    """
    A problem with one label, named by the label's key.
    """
    return ConfigError(f"label {key}", message)


@attrs.frozen
class ServerHint:
    """
    The singular C{loadbalancer.server.*} labels of a service whose server is
    completed by L{applyDefaults}: the port and scheme to reach the container
    at, and the server's other fields (its address is a placeholder).
    """

    port: str = ""
    scheme: str = ""
    server: Any = None


@attrs.frozen
class LabelConfig:
    """
    Decoded labels: the configuration they state, and per service
    (C{(protocol, name)}) the singular server hint to complete it with.
    """

    config: DynamicConfig = attrs.field(factory=DynamicConfig)
    servers: FrozenMap[tuple[str, str], ServerHint] = attrs.field(factory=FrozenMap)
    warnings: tuple[str, ...] = ()


@attrs.frozen
class _Label:
    key: str  # the label as written
    value: str
    native: bool  # relayd. rather than traefik.
    segments: tuple[str, ...]  # after the prefix, indices split off
    texts: tuple[str, ...]  # the label key up to and including each segment


def _split(key: str, prefixLength: int) -> tuple[tuple[str, ...], tuple[str, ...]] | str:
    """
    The segments of a label key after its prefix and, for each, the key text
    up to it; or the reason the key is malformed.
    """
    segments: list[str] = []
    texts: list[str] = []
    text = key[:prefixLength]
    for part in key[prefixLength + 1 :].split("."):
        if not part:
            return "empty segment in the key (two dots in a row, or a dot at the end)"
        if part.startswith("["):
            return f"segment {part!r} starts with '[' (the bracket is a list index: name[0])"
        match = _INDEXED.match(part)
        if match:
            segments.append(match.group(1))
            texts.append(f"{text}.{match.group(1)}")
            segments.append(match.group(2))
            text = f"{text}.{part}"
            texts.append(text)
        elif "[" in part or "]" in part:
            return f"segment {part!r} is not a name or name[n]"
        else:
            text = f"{text}.{part}"
            segments.append(part)
            texts.append(text)
    return tuple(segments), tuple(texts)


def _isDynamic(lowered: tuple[str, ...]) -> bool:
    if lowered[0] in _PROTOCOLS:
        return True
    return lowered[:3] == ("tls", "stores", "default")


def _select(
    labels: Mapping[str, str], prefix: str, problems: list[ConfigError]
) -> list[_Label]:
    """
    The dynamic-configuration labels under C{prefix.} or C{relayd.}, with
    malformed keys reported.
    """
    prefixes = [(prefix, False)]
    if prefix.lower() != NATIVE_PREFIX:
        prefixes.append((NATIVE_PREFIX, True))
    selected: list[_Label] = []
    for key in sorted(labels):
        for name, native in prefixes:
            if not key.lower().startswith(name.lower() + "."):
                continue
            split = _split(key, len(name))
            if isinstance(split, str):
                # Only keys that look like dynamic configuration are ours to judge.
                first = key[len(name) + 1 :].split(".")[0].lower()
                if first in _PROTOCOLS or first == "tls":
                    problems.append(labelProblem(key, split))
                continue
            segments, texts = split
            if _isDynamic(tuple(s.lower() for s in segments)):
                selected.append(_Label(key, labels[key], native, segments, texts))
    return selected


def _canonical(labels: list[_Label], problems: list[ConfigError]) -> list[_Label]:
    """
    Merge keys that differ only in case, as Traefik does: each path takes the
    spelling of its first label in sorted order (so C{Web} and C{web} are one
    router), a C{relayd.} label replaces the C{traefik.} one with the same key,
    and two labels with the same prefix and key are a problem.
    """
    spelling: dict[tuple[str, ...], str] = {}
    for label in labels:
        for i, segment in enumerate(label.segments):
            spelling.setdefault(tuple(s.lower() for s in label.segments[: i + 1]), segment)
    chosen: dict[tuple[str, ...], _Label] = {}
    for label in labels:
        lowered = tuple(s.lower() for s in label.segments)
        segments = tuple(spelling[lowered[: i + 1]] for i in range(len(lowered)))
        label = attrs.evolve(label, segments=segments)
        previous = chosen.get(lowered)
        if previous is not None:
            if previous.native == label.native:
                problems.append(
                    labelProblem(
                        label.key,
                        f"the same key as {previous.key!r} (keys are case-insensitive); "
                        "set it once",
                    )
                )
                continue
            if previous.native:
                continue
        chosen[lowered] = label
    return list(chosen.values())


def _flatKey(segments: tuple[str, ...]) -> str:
    parts: list[str] = []
    for segment in segments:
        if segment.isascii() and segment.isdigit() and parts:
            parts[-1] += f"[{segment}]"
        else:
            parts.append(segment)
    return ".".join(parts)


def _serverHint(
    protocol: str, service: str, fields: dict[str, _Label], problems: list[ConfigError]
) -> tuple[ServerHint | None, list[tuple[_Label, tuple[str, ...]]]]:
    """
    Turn a service's singular C{server.*} labels into a hint, or (for a URL)
    into C{servers[0]} labels to decode with the rest.
    """
    if protocol == "http" and "url" in fields:
        extra = [fields[k].key for k in ("port", "scheme") if k in fields]
        if extra:
            problems.append(
                labelProblem(
                    extra[0], "port and scheme may not be set when the server's url is"
                )
            )
            return None, []
        return None, [
            (label, ("servers", "0", _SERVER_KEYS[protocol][name]))
            for name, label in fields.items()
        ]
    port = fields.pop("port", None)
    scheme = fields.pop("scheme", None)
    failed = False
    if port is not None:
        text = port.value.strip()
        if not (text.isascii() and text.isdigit() and 0 < int(text) <= 65535):
            problems.append(labelProblem(port.key, f"expected a port number, got {port.value!r}"))
            failed = True
    if scheme is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme.value.strip()):
        problems.append(labelProblem(scheme.key, f"expected a URL scheme, got {scheme.value!r}"))
        failed = True
    placeholder: dict[str, Any] = {
        "http": {"url": "http://placeholder"},
        "tcp": {"address": "placeholder:1"},
        "udp": {"address": "placeholder:1"},
    }[protocol]
    cls = {"http": Server, "tcp": TCPServer, "udp": UDPServer}[protocol]
    for name, label in fields.items():
        placeholder[_SERVER_KEYS[protocol][name]] = label.value
    try:
        server, _ = decode(cls, placeholder)
    except ConfigError as e:
        for error in flatten([e]):
            found = fields.get(error.path.lower())
            key = found.key if found else next(iter(fields.values())).key
            problems.append(labelProblem(key, error.message))
        return None, []
    if failed:
        return None, []
    return (
        ServerHint(
            port=port.value.strip() if port else "",
            scheme=scheme.value.strip() if scheme else "",
            server=server,
        ),
        [],
    )


def _errorLabel(path: str, labels: list[tuple[_Label, tuple[str, ...]]]) -> ConfigError | None:
    """
    The label a decoding error at a model path is about: the label sharing the
    longest prefix with the path, named up to that prefix.
    """
    wanted: list[str] = []
    for part in path.split("."):
        match = _INDEXED.match(part)
        if match:
            wanted += [match.group(1).lower(), match.group(2)]
        else:
            wanted.append(part.lower())
    best: tuple[int, str] | None = None
    for label, segments in labels:
        lowered = [s.lower() for s in segments]
        common = 0
        while common < min(len(lowered), len(wanted)) and lowered[common] == wanted[common]:
            common += 1
        if common and (best is None or common > best[0]):
            # The rewritten singular server has two segments for one of the key's.
            textIndex = min(common, len(label.texts)) - 1
            best = (common, label.texts[textIndex])
    if best is None:
        return None
    common, text = best
    rest = _flatKey(tuple(wanted[common:]))
    return ConfigError(f"label {text}", "") if not rest else ConfigError(f"label {text}", rest)


def decodeLabels(
    labels: Mapping[str, str], prefix: str = "traefik"
) -> tuple[LabelConfig, list[ConfigError]]:
    """
    Decode the dynamic configuration in a container's labels (or a service's
    tags, as C{key=value} pairs).

    Only C{<prefix>.http.*}, C{<prefix>.tcp.*}, C{<prefix>.udp.*} and
    C{<prefix>.tls.stores.default.*} are read, and the same under C{relayd.};
    other labels (C{traefik.enable}, C{traefik.docker.network}...) are the
    provider's.

    @return: the decoded labels and the problems, each naming its label. With
        problems the configuration is empty: as in Traefik, a container whose
        labels do not decode contributes nothing.
    """
    problems: list[ConfigError] = []
    selected = _canonical(_select(labels, prefix, problems), problems)
    placed: list[tuple[_Label, tuple[str, ...]]] = []
    singular: dict[tuple[str, str], dict[str, _Label]] = {}
    plural: dict[tuple[str, str], _Label] = {}
    for label in selected:
        lowered = tuple(s.lower() for s in label.segments)
        if lowered[0] in _PROTOCOLS and len(lowered) >= 4 and lowered[1] == "services":
            refused = _NOT_IN_LABELS.get((lowered[0], "services"), ())
            if lowered[3] in refused:
                problems.append(
                    labelProblem(
                        label.key,
                        f"{label.segments[3]} services cannot be defined with labels "
                        "(as in Traefik); define them in a file",
                    )
                )
                continue
            if len(lowered) >= 5 and lowered[3] == "loadbalancer" and lowered[4] == "server":
                if len(lowered) != 6 or lowered[5] not in _SERVER_KEYS[lowered[0]]:
                    known = ", ".join(sorted(set(_SERVER_KEYS[lowered[0]].values())))
                    problems.append(
                        labelProblem(label.key, f"unknown server key; expected one of {known}")
                    )
                    continue
                singular.setdefault((lowered[0], label.segments[2]), {})[lowered[5]] = label
                continue
            if len(lowered) >= 5 and lowered[3] == "loadbalancer" and lowered[4] == "servers":
                plural.setdefault((lowered[0], label.segments[2]), label)
        if lowered[0] == "http" and len(lowered) >= 2 and lowered[1] == "serverstransports":
            problems.append(
                labelProblem(
                    label.key,
                    "serversTransports cannot be defined with labels (as in Traefik); "
                    "define them in a file",
                )
            )
            continue
        placed.append((label, label.segments))
    hints: dict[tuple[str, str], ServerHint] = {}
    for (protocol, serviceName), fields in singular.items():
        if (protocol, serviceName) in plural:
            problems.append(
                labelProblem(
                    plural[(protocol, serviceName)].key,
                    "a service's servers are set either with loadbalancer.server or "
                    "with loadbalancer.servers[n], not both",
                )
            )
            continue
        hint, more = _serverHint(protocol, serviceName, dict(fields), problems)
        if hint is not None:
            hints[(protocol, serviceName)] = hint
        for label, tail in more:
            placed.append((label, label.segments[:4] + tail))
    tree: dict = {}
    for label, segments in placed:
        try:
            placeFlat(DynamicConfig, tree, _flatKey(segments), label.value)
        except ConfigError as e:
            problems.append(labelProblem(label.key, e.message))
    # Every service named by a singular server is a load balancer, even when
    # the server labels are its only ones.
    for protocol, serviceName in hints:
        services = tree.setdefault(protocol, {}).setdefault("services", {})
        services.setdefault(serviceName, {}).setdefault("loadBalancer", {})
    if problems:
        return LabelConfig(), problems
    try:
        config, warnings = decode(DynamicConfig, tree)
    except ConfigError as e:
        for error in flatten([e]):
            located = _errorLabel(error.path, placed)
            if located is None:
                problems.append(error)
            elif located.message:
                problems.append(ConfigError(located.path, f"{located.message}: {error.message}"))
            else:
                problems.append(ConfigError(located.path, error.message))
        return LabelConfig(), problems
    return LabelConfig(config=config, servers=FrozenMap(hints), warnings=tuple(warnings)), []


# Defaults for what the labels leave out.


def _joinHostPort(host: str, port: str) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def applyDefaults(
    labels: LabelConfig,
    name: str,
    defaultRule: str | Template,
    address: str | None,
    port: int | str | None = None,
    data: Mapping[str, Any] | None = None,
) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    Complete a container's decoded labels as Traefik's label-based providers do.

      - TCP/UDP: with no service one named C{name} is created; each load
        balancer's first server is the container at the label's port (or
        C{port}); a router without a rule is dropped; a router without a
        service is bound to the only one (dropped when there are several).
        Labels that define only TCP/UDP objects get no HTTP defaults.
      - HTTP: with no service, a load balancer named C{name}; each load
        balancer without servers gets the container as its server
        (C{scheme://address:port}, the scheme and port from the singular
        server labels, the scheme defaulting to C{http}); with no router, one
        named C{name} unless there are several services; a router without a
        rule gets C{defaultRule} rendered with C{.Name} (= C{name}) and
        C{data} (such as C{ContainerName} and C{Labels}), and is dropped if
        that fails or renders empty; a router without a service is bound to
        the only service, or dropped when there are several.

    @param name: the service name the provider derives (already normalized).
    @param defaultRule: the provider's C{defaultRule} template (source or
        compiled with L{compileTemplate}).
    @param address: the container's host or IP; C{None} when it has none to
        serve from (stopped, unhealthy), which leaves load balancers empty.
    @param port: the port to use when the labels give none.

    @return: the configuration and the problems. A server that cannot be
        built (no port) makes the whole configuration empty, as in Traefik; a
        router that cannot be completed is dropped alone.
    """
    problems: list[ConfigError] = []
    config = labels.config
    defaultPort = "" if port is None else str(port)

    def hint(protocol: str, service: str) -> ServerHint:
        return labels.servers.get((protocol, service), ServerHint())

    def serverPort(protocol: str, service: str) -> str | None:
        chosen = hint(protocol, service).port or defaultPort
        if not chosen:
            problems.append(
                ConfigError(
                    f"{protocol}.services.{service}",
                    "port is missing: set the label "
                    f"traefik.{protocol}.services.{service}.loadbalancer.server.port",
                )
            )
            return None
        return chosen

    tcp, udp, http = config.tcp, config.udp, config.http
    tcpOrUDP = bool(tcp.routers or tcp.services or udp.routers or udp.services)
    failed = False

    if tcp.routers or tcp.services:
        services = dict(tcp.services) or {name: TCPService(loadBalancer=TCPLoadBalancer())}
        if address is not None:
            for serviceName, service in services.items():
                lb = service.loadBalancer
                if lb is None or lb.servers:
                    continue
                chosen = serverPort("tcp", serviceName)
                if chosen is None:
                    failed = True
                    continue
                template = hint("tcp", serviceName).server or TCPServer(address="placeholder:1")
                server = attrs.evolve(template, address=_joinHostPort(address, chosen))
                services[serviceName] = attrs.evolve(
                    service, loadBalancer=attrs.evolve(lb, servers=(server,))
                )
        routers = _bindRouters("tcp", dict(tcp.routers), services, problems, needRule=True)
        tcp = attrs.evolve(tcp, services=FrozenMap(services), routers=FrozenMap(routers))

    if udp.routers or udp.services:
        udpServices = dict(udp.services) or {name: UDPService(loadBalancer=UDPLoadBalancer())}
        if address is not None:
            for serviceName, udpService in udpServices.items():
                udpLB = udpService.loadBalancer
                if udpLB is None or udpLB.servers:
                    continue
                chosen = serverPort("udp", serviceName)
                if chosen is None:
                    failed = True
                    continue
                udpTemplate = hint("udp", serviceName).server or UDPServer(address="placeholder:1")
                udpServer = attrs.evolve(udpTemplate, address=_joinHostPort(address, chosen))
                udpServices[serviceName] = attrs.evolve(
                    udpService, loadBalancer=attrs.evolve(udpLB, servers=(udpServer,))
                )
        udpRouters = _bindRouters("udp", dict(udp.routers), udpServices, problems, needRule=False)
        udp = attrs.evolve(udp, services=FrozenMap(udpServices), routers=FrozenMap(udpRouters))

    if not (tcpOrUDP and not http.routers and not http.middlewares and not http.services):
        httpServices = dict(http.services) or {name: Service(loadBalancer=LoadBalancer())}
        if address is not None:
            for serviceName, httpService in httpServices.items():
                httpLB = httpService.loadBalancer
                if httpLB is None or httpLB.servers:
                    continue
                chosen = serverPort("http", serviceName)
                if chosen is None:
                    failed = True
                    continue
                found = hint("http", serviceName)
                url = f"{found.scheme or 'http'}://{_joinHostPort(address, chosen)}"
                httpServer = attrs.evolve(found.server or Server(url=url), url=url)
                httpServices[serviceName] = attrs.evolve(
                    httpService, loadBalancer=attrs.evolve(httpLB, servers=(httpServer,))
                )
        httpRouters = dict(http.routers)
        if not httpRouters and len(httpServices) <= 1:
            httpRouters[name] = Router()
        if any(not r.rule for r in httpRouters.values()):
            model = {"Name": name, **(data or {})}
            try:
                template = (
                    defaultRule if isinstance(defaultRule, Template) else compileTemplate(defaultRule)
                )
            except TemplateError as e:
                template = None
                templateError = str(e)
            for routerName, router in list(httpRouters.items()):
                if router.rule:
                    continue
                path = f"http.routers.{routerName}.rule"
                if template is None:
                    problems.append(ConfigError(path, f"the default rule does not compile: {templateError}"))
                    del httpRouters[routerName]
                    continue
                try:
                    rule = template.render(model)
                except TemplateError as e:
                    problems.append(ConfigError(path, f"the default rule failed: {e}"))
                    del httpRouters[routerName]
                    continue
                if not rule:
                    problems.append(ConfigError(path, "the default rule renders empty; the router is dropped"))
                    del httpRouters[routerName]
                    continue
                httpRouters[routerName] = attrs.evolve(router, rule=rule)
        httpRouters = _bindRouters("http", httpRouters, httpServices, problems, needRule=False)
        http = attrs.evolve(http, services=FrozenMap(httpServices), routers=FrozenMap(httpRouters))

    if failed:
        return DynamicConfig(), problems
    return attrs.evolve(config, http=http, tcp=tcp, udp=udp), problems


def _bindRouters(
    protocol: str,
    routers: dict[str, Any],
    services: Mapping[str, Any],
    problems: list[ConfigError],
    needRule: bool,
) -> dict[str, Any]:
    """
    Bind routers without a service to the only service; drop those that
    cannot be bound (and TCP routers without a rule).
    """
    result = {}
    for routerName, router in routers.items():
        path = f"{protocol}.routers.{routerName}"
        if needRule and not router.rule:
            problems.append(ConfigError(f"{path}.rule", "empty rule; the router is dropped"))
            continue
        if not router.service:
            if len(services) != 1:
                problems.append(
                    ConfigError(
                        f"{path}.service",
                        "cannot be bound automatically: the labels define the services "
                        + ", ".join(sorted(services))
                        + "; set the router's service label",
                    )
                )
                continue
            router = attrs.evolve(router, service=next(iter(services)))
        result[routerName] = router
    return result
