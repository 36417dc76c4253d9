"""
The Rancher provider (Rancher 1.x, metadata mode, as Traefik 1.7 and 2.x read
it): services found in the Rancher metadata service, each exposed through its
labels (Traefik 1.x labels such as C{traefik.port} and C{traefik.domain}, or
v2 labels such as C{traefik.http.routers...}), served by its running, healthy
containers at their C{primary_ip}.

The metadata service is read with plain GETs that accept JSON: the version,
then C{/stacks}, which carries every stack's services and their containers
inline (Traefik's only data call: one consistent snapshot). With C{watch} the
version is long-polled (C{version?wait=true&value=<last>&maxWait=<refreshSeconds>})
and the stacks are read again when it changes; with C{intervalPoll} the
version is read every C{refreshSeconds} instead; without C{watch} the stacks
are read once. Failures keep the last good configuration, reported with the
error, and are retried with backoff.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError
from relayd.config.gotemplate import Template, TemplateError, compileTemplate, normalize
from relayd.config.labels import LabelConfig, applyDefaults, decodeLabels
from relayd.config.labelsv1 import labelVersion, translateV1
from relayd.config.merge import mergeFirstWins
from relayd.config.schema import parseBoolOrNone
from relayd.config.static import RancherProvider as RancherProviderConfig
from relayd.config.types import FrozenMap
from relayd.providers.base import PollingProvider, Sink, SourceError
from relayd.providers.containers import ConstraintError, compileConstraints
from relayd.providers.http import get

__all__ = ["RancherProvider", "buildConfiguration", "DEFAULT_RULE"]

# Traefik 2.x's default rule for the Rancher provider.
DEFAULT_RULE = "Host(`{{ normalize .Name }}`)"
# The go-rancher-metadata client's HTTP timeout: a request (including a long
# poll) that has no answer by then is given up.
CLIENT_TIMEOUT = 10.0

_HEALTHY = ("", "healthy", "updating-healthy")
_CONTAINER_STATES = ("", "running", "updating-running", "upgraded")
_SERVICE_STATES = ("", "active", "updating-active", "upgraded", "upgrading")


class _Options:
    """
    What L{buildConfiguration} needs from the static configuration, with the
    default rule compiled once.
    """

    def __init__(self, config: RancherProviderConfig) -> None:
        self.domain = config.domain
        self.exposedByDefault = config.exposedByDefault
        self.enableServiceHealthFilter = config.enableServiceHealthFilter
        self.constraints = config.constraints
        # Traefik's constraint expressions over a service's labels (Label,
        # LabelRegex, !, &&, ||); one that does not parse exposes nothing.
        self.matches: Any = None
        self.constraintProblem: ConfigError | None = None
        if config.constraints:
            try:
                self.matches = compileConstraints(config.constraints)
            except ConstraintError as e:
                self.constraintProblem = ConfigError("providers.rancher.constraints", str(e))
        source = config.defaultRule or DEFAULT_RULE
        self.defaultRule: Template | str
        try:
            self.defaultRule = compileTemplate(source)
        except TemplateError:
            # applyDefaults reports it on every router that needs it.
            self.defaultRule = source


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def servicePort(ports: Any) -> str:
    """
    The port Traefik 2.x takes from a service's first C{ports} entry
    (C{"8080:80/tcp"} is C{80}, C{"80"} is C{80}).
    """
    if not isinstance(ports, list) or not ports or not isinstance(ports[0], str):
        return ""
    raw = ports[0].split("/")[0]
    parts = raw.split(":")
    if len(parts) >= 2:
        return parts[1]
    return parts[0]


def keptContainers(service: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """
    The primary IPs of a service's containers that Traefik keeps (health
    empty, healthy or updating-healthy; state empty, running,
    updating-running or upgraded), and a warning per kept container
    without an IP.
    """
    ips: list[str] = []
    warnings: list[str] = []
    containers = service.get("containers")
    for container in containers if isinstance(containers, list) else []:
        if not isinstance(container, dict):
            continue
        if _text(container.get("health_state")) not in _HEALTHY:
            continue
        if _text(container.get("state")) not in _CONTAINER_STATES:
            continue
        ip = _text(container.get("primary_ip"))
        if not ip:
            warnings.append(f"container {_text(container.get('name'))} has no primary_ip; it is ignored")
            continue
        ips.append(ip)
    return ips, warnings


def _v1Labels(labels: dict[str, str], service: str, stack: str, domain: str) -> dict[str, str]:
    """
    The labels with Traefik 1.x Rancher's default frontend rule added when
    none is set: C{Host:<service>.<stack>.<domain>}, lower-cased, the domain
    from C{traefik.domain} or the provider's (no domain, no dot).
    """
    lowered = {k.lower(): v for k, v in labels.items()}
    if "traefik.frontend.rule" in lowered:
        return labels
    chosen = lowered.get("traefik.domain", domain)
    rule = "Host:" + f"{service}.{stack}".lower() + (f".{chosen}" if chosen else "")
    return {**labels, "traefik.frontend.rule": rule}


def _serviceConfig(
    service: Mapping[str, Any], stack: str, options: _Options
) -> tuple[DynamicConfig | None, list[ConfigError]]:
    """
    One Rancher service's configuration, or C{None} when it is not exposed
    (or cannot be, with the problems saying why).
    """
    serviceName = _text(service.get("name"))
    where = f"rancher service {serviceName}.{stack}"
    labels = _labels(service.get("labels"))
    enable = next((v for k, v in labels.items() if k.lower() == "traefik.enable"), None)
    enabled = options.exposedByDefault if enable is None else parseBoolOrNone(enable.strip())
    if not enabled:
        return None, []
    if options.matches is not None and not options.matches(labels):
        return None, []
    if options.enableServiceHealthFilter:
        # Metadata mode knows no service health in Traefik; only the state.
        if _text(service.get("state")) not in _SERVICE_STATES:
            return None, []
    ips, warnings = keptContainers(service)
    problems = [ConfigError(where, w) for w in warnings]
    name = normalize(f"{serviceName}_{stack}")
    decoded: LabelConfig
    if labelVersion(labels) == "v1":
        decoded, errors = translateV1(
            _v1Labels(labels, serviceName, stack, options.domain), f"{serviceName}/{stack}", options.domain
        )
        port: str | None = None
        if not errors:
            missing = [n for n in decoded.config.http.services if not decoded.servers.get(("http", n), None)
                       or not decoded.servers[("http", n)].port]
            if missing:
                errors = [ConfigError("label traefik.port", "not set; Traefik 1.x's Rancher provider "
                                      "does not expose a service without it")]
    else:
        decoded, errors = decodeLabels(labels)
        port = servicePort(service.get("ports")) or None
    if errors:
        return None, problems + [ConfigError(f"{where}: {e.path}", e.message) for e in errors]
    problems += [ConfigError(where, w) for w in decoded.warnings]
    data = {"Labels": labels, "Service": serviceName, "Stack": stack,
            "Domain": labels.get("traefik.domain", options.domain)}
    if not ips:
        # A port is required even for a service scaled to nothing (as in
        # Traefik); check it with a stand-in address, then build it empty.
        probe, failed = applyDefaults(decoded, name, options.defaultRule, "192.0.2.1", port, data)
        if probe.isEmpty():
            return None, problems + _located(where, failed)
        config, more = applyDefaults(decoded, name, options.defaultRule, None, port, data)
        return (None if config.isEmpty() else config), problems + _located(where, more)
    configs = []
    for ip in ips:
        config, more = applyDefaults(decoded, name, options.defaultRule, ip, port, data)
        if config.isEmpty():
            return None, problems + _located(where, more)
        configs.append(config)
        if ip == ips[0]:
            problems += _located(where, more)
    return _joinServers(configs), problems


def _located(where: str, errors: list[ConfigError]) -> list[ConfigError]:
    return [ConfigError(f"{where}: {e.path}", e.message) for e in errors]


def _joinServers(configs: list[DynamicConfig]) -> DynamicConfig:
    """
    One configuration per container, made one: the first, with each load
    balancer's servers gathered from all of them in order (once each).
    """
    first = configs[0]
    sections: dict[str, Any] = {}
    for protocol in ("http", "tcp", "udp"):
        section = getattr(first, protocol)
        services = {}
        for serviceName, service in section.services.items():
            lb = service.loadBalancer
            if lb is None:
                services[serviceName] = service
                continue
            servers: list[Any] = []
            for config in configs:
                other = getattr(config, protocol).services.get(serviceName)
                if other is None or other.loadBalancer is None:
                    continue
                for server in other.loadBalancer.servers:
                    if server not in servers:
                        servers.append(server)
            services[serviceName] = attrs.evolve(
                service, loadBalancer=attrs.evolve(lb, servers=tuple(servers))
            )
        sections[protocol] = attrs.evolve(section, services=FrozenMap(services))
    return attrs.evolve(first, http=sections["http"], tcp=sections["tcp"], udp=sections["udp"])


def buildConfiguration(
    stacks: Any, config: RancherProviderConfig | _Options
) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    The dynamic configuration of the metadata service's C{/stacks} answer,
    and the problems met (services skipped for bad labels, containers
    without an IP, objects defined by two services).
    """
    options = config if isinstance(config, _Options) else _Options(config)
    if options.constraintProblem is not None:
        return DynamicConfig(), [options.constraintProblem]
    if not isinstance(stacks, list):
        raise SourceError("stacks: expected a JSON list")
    sources: list[tuple[str, DynamicConfig]] = []
    problems: list[ConfigError] = []
    for stack in stacks:
        if not isinstance(stack, dict):
            continue
        stackName = _text(stack.get("name"))
        services = stack.get("services")
        for service in services if isinstance(services, list) else []:
            if not isinstance(service, dict):
                continue
            built, more = _serviceConfig(service, stackName, options)
            problems.extend(more)
            if built is not None:
                sources.append((f"rancher service {_text(service.get('name'))}.{stackName}", built))
    if not sources:
        return DynamicConfig(), problems
    merged, conflicts = mergeFirstWins(sources)
    return merged, problems + conflicts


class RancherProvider(PollingProvider):
    """
    Reads C{providers.rancher.endpoint}/C{prefix}; objects are named
    C{name@rancher}.
    """

    _log = Logger()
    providerName = "rancher"

    def __init__(
        self,
        reactor: IReactorTime,
        sink: Sink,
        config: RancherProviderConfig,
        agent: Any = None,
    ) -> None:
        self.refresh = max(float(config.refreshSeconds), 1.0)
        self.longPoll = config.watch and not config.intervalPoll
        super().__init__(
            reactor,
            sink,
            interval=0.0 if self.longPoll else self.refresh,
            timeout=self.refresh + CLIENT_TIMEOUT if self.longPoll else CLIENT_TIMEOUT,
            watch=config.watch,
        )
        self.config = config
        self.options = _Options(config)
        self.base = config.endpoint.rstrip("/") + "/" + config.prefix.strip("/")
        if agent is None:
            self._pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(reactor, connectTimeout=CLIENT_TIMEOUT, pool=self._pool)
        self.agent = agent
        self.version: str | None = None

    def startService(self) -> None:
        mode = "long poll" if self.longPoll else ("every {:g}s".format(self.refresh) if self.config.watch else "once")
        self._log.info("rancher provider: reading {base} ({mode})", base=_shown(self.base), mode=mode)
        super().startService()

    async def _get(self, path: str) -> Any:
        headers = Headers()
        headers.setRawHeaders(b"accept", [b"application/json"])
        code, body = await get(self.agent, (self.base + path).encode("ascii"), headers, "cannot reach the metadata service")
        if code != 200:
            raise SourceError(f"error {code} accessing {path.split('?')[0]}")
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise SourceError(f"{path.split('?')[0]}: not JSON: {e}") from None

    async def _fetch(self) -> DynamicConfig | None:
        if self.longPoll:
            value = quote(self.version if self.version is not None else "init", safe="")
            version = await self._get(f"/version?wait=true&value={value}&maxWait={self.refresh:g}")
        else:
            version = await self._get("/version")
        if not isinstance(version, str):
            raise SourceError("version: expected a JSON string")
        if version == self.version:
            return None
        stacks = await self._get("/stacks")
        config, problems = buildConfiguration(stacks, self.options)
        self.version = version
        self.problems = tuple(problems)
        for problem in problems:
            self._log.warn("rancher provider: {problem}", problem=str(problem))
        self._log.info("rancher provider: metadata version {version}: {count} services",
                       version=version, count=len(config.http.services) + len(config.tcp.services)
                       + len(config.udp.services))
        return config

    def fetch(self) -> defer.Deferred[DynamicConfig | None]:
        return defer.Deferred.fromCoroutine(self._fetch())



def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
