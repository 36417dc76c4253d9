"""
The Docker provider: routes from the labels of the containers a Docker engine
runs (dockerd, or podman's Docker-compatible API), read over the Engine API on
a UNIX socket (C{unix://}) or TCP (C{tcp://}, with TLS when C{tls} is set).

Like Traefik's provider it lists every container (C{GET /containers/json}),
inspects each, keeps those that are enabled (C{exposedByDefault},
C{traefik.enable}), match the C{constraints}, run, and are healthy when they
have a health check (unless C{allowEmptyServices}), decodes their labels (v2
and relayd's own with L{relayd.config.labels}, Traefik 1.x labels with
L{relayd.config.labelsv1}), completes them with the container's address and
port and the C{defaultRule}, and merges all containers into one configuration
named C{name@docker}. With C{watch} it follows C{GET /events} and lists again
after each container start, death or health change (a burst of events gives
one listing); a broken stream is reopened with backoff and followed by a
listing, as events may have been missed.

In Swarm mode (C{providers.docker.swarmMode}, or the C{providers.swarm}
section as in Traefik v3, named C{name@swarm}) the workloads are the swarm's
services, with the service's labels (C{Spec.Labels}). A service whose
C{lbswarm} label is true is one server on its virtual IP; otherwise each
running task (C{GET /tasks}, desired state running) is a server on its address
on the service's networks, or, for a task on the host network, its node's
address. Swarm has no events for services, so the services are listed every
C{refreshSeconds} (C{swarmModeRefreshSeconds} for C{providers.docker}).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping, cast
from urllib.parse import quote, urlsplit

import attrs
from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError
from relayd.config.gotemplate import Template, TemplateError, compileTemplate, normalize
from relayd.config.labels import NATIVE_PREFIX, LabelConfig, applyDefaults, decodeLabels
from relayd.config.labelsv1 import labelVersion, translateV1
from relayd.config.static import DockerProvider as DockerProviderConfig
from relayd.providers.base import Poller, PollingProvider, Sink, SourceError
from relayd.providers.containers import ConstraintError, compileConstraints, mergeContainers
from relayd.proxy.transport import TransportError, tlsCreator
from relayd.proxy.upstream import TransportSettings

__all__ = [
    "DockerProvider",
    "SwarmProvider",
    "Container",
    "parseContainer",
    "parseService",
    "parseTask",
    "buildConfiguration",
    "Settings",
]

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# Events after which the containers are listed again (Traefik's choice).
_RELEVANT = ("start", "die")
# Names Traefik tries, in order, for a container in host network mode.
_HOST_NAMES = ("host.docker.internal", "host.containers.internal")


@attrs.frozen
class Container:
    """
    What the provider uses of a container's inspect answer.

    @ivar name: the container's name without the leading C{/}.
    @ivar networks: each network's name and the container's address on it.
    @ivar ports: the exposed ports (C{"80/tcp"}) and their host bindings
        (C{(hostIP, hostPort)}).
    """

    id: str
    name: str
    status: str = ""
    health: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    networkMode: str = ""
    networks: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # Swarm mode: the swarm service's name (a task's C{name} is
    # C{<service>.<slot>}), and the address of the node running the task.
    service: str = ""
    nodeAddress: str = ""

    @property
    def serviceName(self) -> str:
        """
        Traefik's service name: C{<service>_<project>} for a Compose
        container, else the swarm service's name or the container name;
        normalized.
        """
        project, service = self.labels.get(COMPOSE_PROJECT), self.labels.get(COMPOSE_SERVICE)
        if project is not None and service is not None:
            return normalize(f"{service}_{project}")
        return normalize(self.service or self.name)

    @property
    def v1Name(self) -> str:
        """
        The name Traefik 1.x gave a container: C{<service>.<project>} with
        Compose, else the container name.
        """
        project, service = self.labels.get(COMPOSE_PROJECT), self.labels.get(COMPOSE_SERVICE)
        if project and service:
            return f"{service}.{project}"
        return self.name


def parseContainer(inspected: Mapping[str, Any]) -> Container:
    """
    The provider's view of a C{GET /containers/<id>/json} answer.
    """
    state = inspected.get("State") or {}
    config = inspected.get("Config") or {}
    hostConfig = inspected.get("HostConfig") or {}
    settings = inspected.get("NetworkSettings") or {}
    networks = []
    for name, network in sorted((settings.get("Networks") or {}).items()):
        network = network or {}
        networks.append((name, network.get("IPAddress") or network.get("GlobalIPv6Address") or ""))
    ports = []
    for port, bindings in sorted((settings.get("Ports") or {}).items()):
        ports.append((port, tuple((b.get("HostIp", ""), b.get("HostPort", "")) for b in bindings or ())))
    for port in config.get("ExposedPorts") or {}:
        if port not in dict(ports):
            ports.append((port, ()))
    return Container(
        id=inspected.get("Id", ""),
        name=(inspected.get("Name") or "").lstrip("/"),
        status=state.get("Status", ""),
        health=(state.get("Health") or {}).get("Status", ""),
        labels=dict(config.get("Labels") or {}),
        networkMode=hostConfig.get("NetworkMode", ""),
        networks=tuple(networks),
        ports=tuple(sorted(ports)),
    )


def _networkAddress(address: str) -> str:
    return address.partition("/")[0]


def parseService(service: Mapping[str, Any], networks: Mapping[str, str]) -> Container:
    """
    The provider's view of a swarm service balanced by the swarm
    (C{lbswarm}): its labels and its virtual IP on each of the swarm
    C{networks} (names by id). A service in C{dnsrr} endpoint mode, or on
    the host network, has no virtual IP, hence no address.
    """
    spec = service.get("Spec") or {}
    name = spec.get("Name", "")
    found = []
    if ((spec.get("EndpointSpec") or {}).get("Mode") or "vip") == "vip":
        for virtualIP in (service.get("Endpoint") or {}).get("VirtualIPs") or ():
            network = networks.get(virtualIP.get("NetworkID", ""))
            address = _networkAddress(virtualIP.get("Addr") or "")
            if network is not None and address:
                found.append((network, address))
    return Container(
        id=service.get("ID", ""),
        name=name,
        service=name,
        labels=dict(spec.get("Labels") or {}),
        networks=tuple(sorted(found)),
    )


def parseTask(
    service: Mapping[str, Any], task: Mapping[str, Any], networks: Mapping[str, str], nodeAddress: str = ""
) -> Container:
    """
    The provider's view of one task of a swarm service: the service's labels,
    named C{<service>.<slot>} (C{<service>.<task id>} for a global service),
    with its addresses on the swarm C{networks} (names by id); a task on the
    host network is in host network mode on C{nodeAddress}, its node's.
    """
    spec = service.get("Spec") or {}
    name = spec.get("Name", "")
    isGlobal = "Global" in (spec.get("Mode") or {})
    found = []
    host = False
    for attachment in task.get("NetworksAttachments") or ():
        network = attachment.get("Network") or {}
        driver = ((network.get("Spec") or {}).get("DriverConfiguration") or {}).get("Name") or (
            network.get("DriverState") or {}
        ).get("Name")
        if driver == "host":
            host = True
            continue
        networkName = networks.get(network.get("ID", ""))
        if networkName is None:
            continue
        for address in attachment.get("Addresses") or ():
            if _networkAddress(address):
                found.append((networkName, _networkAddress(address)))
    return Container(
        id=task.get("ID", ""),
        name=f"{name}.{task.get('ID', '') if isGlobal else task.get('Slot', '')}",
        service=name,
        status=(task.get("Status") or {}).get("State", ""),
        labels=dict(spec.get("Labels") or {}),
        networkMode="host" if host and not found else "",
        networks=tuple(found),
        nodeAddress=nodeAddress,
    )


@attrs.frozen
class Settings:
    """
    The provider options the configuration is built with, compiled.
    """

    exposedByDefault: bool = True
    defaultRule: Template | str = "Host(`{{ normalize .Name }}`)"
    network: str = ""
    useBindPortIP: bool = False
    allowEmptyServices: bool = False
    constraints: Any = None
    # The address of a container in host network mode.
    hostAddress: str = "127.0.0.1"
    # Swarm mode: the network label is also read as traefik.swarm.network.
    swarm: bool = False


def _option(labels: Mapping[str, str], key: str) -> str | None:
    """
    A provider label (C{enable}, C{docker.network}) under the C{relayd.} or
    C{traefik.} prefix, case-insensitively; C{relayd.} wins.
    """
    found: dict[str, str] = {}
    for name, value in labels.items():
        lowered = name.lower()
        for prefix in (NATIVE_PREFIX, "traefik"):
            if lowered == f"{prefix}.{key}":
                found[prefix] = value
    return found.get(NATIVE_PREFIX, found.get("traefik"))


def _bool(value: str | None, default: bool) -> bool | None:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    return None


def _portNumber(port: str) -> int:
    try:
        return int(port.split("/")[0])
    except ValueError:
        return 1 << 30


def _address(container: Container, settings: Settings, network: str, resolved: Mapping[str, Container]) -> str:
    """
    The container's IP address: on the chosen network, else the host's for
    host network mode, else the target's for C{container:} mode, else on
    its first network.
    """
    networks = dict(container.networks)
    if network and network in networks:
        return networks[network]
    if container.networkMode == "host":
        return container.nodeAddress or settings.hostAddress
    if container.networkMode.startswith("container:"):
        target = resolved.get(container.networkMode.partition(":")[2])
        if target is None:
            return ""
        return _address(target, settings, _option(target.labels, "docker.network") or network, {})
    for _, address in container.networks:
        if address:
            return address
    return ""


def _build(container: Container, settings: Settings, resolved: Mapping[str, Container]) -> tuple[DynamicConfig | None, list[ConfigError]]:
    labels = container.labels
    enable = _bool(_option(labels, "enable"), settings.exposedByDefault)
    if enable is None:
        return None, [ConfigError("label traefik.enable", f"not a boolean: {_option(labels, 'enable')!r}")]
    if not enable:
        return None, []
    if settings.constraints is not None and not settings.constraints(labels):
        return None, []
    allowNonRunning = _bool(_option(labels, "docker.allownonrunning"), False)
    running = container.status in ("", "running")
    healthy = container.health in ("", "healthy")
    if not allowNonRunning and not running:
        return None, []
    if not settings.allowEmptyServices and not healthy:
        return None, []
    name = container.serviceName
    decoded: LabelConfig
    if labelVersion(labels) == "v1":
        decoded, problems = translateV1(labels, container.v1Name)
    else:
        decoded, problems = decodeLabels(labels)
    if problems:
        return None, problems
    address: str | None = None
    port: str | None = None
    if running and healthy:
        network = _option(labels, "docker.network") or settings.network
        if settings.swarm:
            network = _option(labels, "swarm.network") or network
        exposed = sorted((p for p, _ in container.ports), key=_portNumber)
        port = exposed[0].split("/")[0] if exposed else None
        address = _address(container, settings, network, resolved)
        if settings.useBindPortIP:
            decoded, address, port = _bound(decoded, container, address, port)
        if not address:
            return None, [ConfigError("", f"unable to find the IP address for the container {container.name!r}")]
    data = {"ContainerName": container.name, "Labels": dict(labels)}
    config, problems = applyDefaults(decoded, name, settings.defaultRule, address, port, data)
    return config, problems


def _bound(
    decoded: LabelConfig, container: Container, address: str, port: str | None
) -> tuple[LabelConfig, str, str | None]:
    """
    C{useBindPortIP}: the host binding of the container's port (the label's or
    the lowest exposed), when it has one on a specified IP; else unchanged.
    """
    bindings = {p.split("/")[0]: b for p, b in container.ports if b}

    def binding(wanted: str | None) -> tuple[str, str] | None:
        for hostIP, hostPort in bindings.get(wanted or "", ()):
            if hostIP and hostIP not in ("0.0.0.0", "::"):
                return hostIP, hostPort
        return None

    hints = dict(decoded.servers)
    boundIP = None
    for key, hint in hints.items():
        found = binding(hint.port or port)
        if found is not None:
            boundIP = found[0]
            hints[key] = attrs.evolve(hint, port=found[1])
    found = binding(port)
    if found is not None:
        boundIP, port = found
    if boundIP is None:
        return decoded, address, port
    return attrs.evolve(decoded, servers=type(decoded.servers)(hints)), boundIP, port


def buildConfiguration(
    containers: list[Container], settings: Settings, resolved: Mapping[str, Container] | None = None
) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    The provider's configuration from the inspected containers: each one kept
    or skipped as Traefik does, decoded and completed, then all merged.

    @param resolved: the targets of containers in C{container:<id>} network
        mode, by that id.

    @return: the configuration and the problems, each prefixed with the
        container it is about.
    """
    configs: dict[str, DynamicConfig] = {}
    errors: list[ConfigError] = []
    for container in containers:
        config, problems = _build(container, settings, resolved or {})
        where = f"container {container.name}"
        for problem in problems:
            errors.append(ConfigError(f"{where}: {problem.path}" if problem.path else where, problem.message))
        if config is not None and not (problems and config.isEmpty()):
            configs[f"{container.serviceName}-{container.id}"] = config
    merged, conflicts = mergeContainers(configs)
    return merged, errors + conflicts


class _EventStream(protocol.Protocol):
    """
    The body of C{GET /events}: one JSON object after another; each is
    handed to C{onEvent}; C{done} fires when the stream ends.
    """

    def __init__(self, onEvent: Any) -> None:
        self.onEvent = onEvent
        self.done: defer.Deferred[None] = defer.Deferred()
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data.decode("utf-8", "replace")
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return
            try:
                event, end = self._decoder.raw_decode(text)
            except ValueError:
                self._buffer = text
                return
            self._buffer = text[end:]
            self.onEvent(event)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.done.callback(None)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _EndpointFactory:
    """
    Every request goes to the Docker endpoint, whatever the URL's host.
    """

    def __init__(self, reactor: Any, endpoint: str, tls: Any) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.tls = tls

    def endpointForURI(self, uri: Any) -> Any:
        parts = urlsplit(self.endpoint)
        if parts.scheme == "unix":
            return UNIXClientEndpoint(self.reactor, parts.path)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (2376 if self.tls is not None else 2375)
        endpoint = HostnameEndpoint(self.reactor, host.encode("idna"), port)
        if self.tls is not None:
            try:
                creator = tlsCreator(self.tls, host)
            except TransportError as e:
                raise SourceError(f"tls: {e}") from None
            return wrapClientTLS(creator, cast(Any, endpoint))
        return endpoint


def _problem(config: DockerProviderConfig, section: str = "docker") -> ConfigError | None:
    parts = urlsplit(config.endpoint)
    if parts.scheme == "unix" and parts.path:
        return None
    if parts.scheme in ("tcp", "http", "https") and parts.hostname:
        return None
    return ConfigError(
        f"providers.{section}.endpoint",
        f"unsupported endpoint {config.endpoint!r}: expected unix:///path or tcp://host:port",
    )


class DockerProvider(PollingProvider):
    """
    Containers' labels from a Docker engine; objects are named C{name@docker}.
    """

    _log = Logger()
    providerName = "docker"
    # Events closer together than this give one listing.
    throttle = 0.1

    def __init__(
        self,
        reactor: Any,
        sink: Sink,
        config: DockerProviderConfig,
        agent: Any = None,
    ) -> None:
        timeout = float(config.httpClientTimeout)
        self.swarm = self.providerName == "swarm" or config.swarmMode
        if self.swarm:
            # No events for services: the poller lists every refreshSeconds.
            refresh = config.refreshSeconds if self.providerName == "swarm" else config.swarmModeRefreshSeconds
            super().__init__(reactor, sink, interval=max(float(refresh), 0.01), timeout=timeout, watch=config.watch)
        else:
            # The poller lists once (until it succeeds); events ask for more.
            super().__init__(reactor, sink, interval=1.0, timeout=timeout, watch=False)
        self.reactor = reactor
        self.config = config
        self.problem = _problem(config, self.providerName)
        self.settings = Settings()
        if self.problem is None:
            try:
                self.settings = Settings(
                    exposedByDefault=config.exposedByDefault,
                    defaultRule=compileTemplate(config.defaultRule),
                    network=config.network,
                    useBindPortIP=config.useBindPortIP,
                    allowEmptyServices=config.allowEmptyServices,
                    constraints=compileConstraints(config.constraints) if config.constraints else None,
                    swarm=self.swarm,
                )
            except TemplateError as e:
                self.problem = ConfigError(f"providers.{self.providerName}.defaultRule", str(e))
            except ConstraintError as e:
                self.problem = ConfigError(f"providers.{self.providerName}.constraints", str(e))
        tls = None
        if config.tls is not None:
            tls = TransportSettings(
                name="providers.docker",
                insecureSkipVerify=config.tls.insecureSkipVerify,
                rootCAs=(config.tls.ca,) if config.tls.ca else (),
                certificates=((config.tls.cert, config.tls.key),) if config.tls.cert else (),
            )
        self._scheme = b"https" if tls is not None else b"http"
        if agent is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            agent = Agent.usingEndpointFactory(
                reactor, _EndpointFactory(reactor, config.endpoint, tls), pool=self._pool
            )
        self.agent = agent
        self._headers = Headers({b"user-agent": [b"relayd"]})
        if config.username and config.password:
            token = base64.b64encode(f"{config.username}:{config.password}".encode())
            self._headers.setRawHeaders(b"authorization", [b"Basic " + token])
        self._events = Poller(reactor, self._follow, 1.0, name="docker events")
        self._stream: _EventStream | None = None
        self._listing: defer.Deferred[Any] | None = None
        self._again = False
        self._pending: Any = None
        self._relistFailures = 0

    # Service.

    def startService(self) -> None:
        if self.problem is not None:
            service.Service.startService(self)
            self._log.error("{provider} provider: {error}; not running", provider=self.providerName,
                            error=str(self.problem))
            self.errors = (self.problem,)
            self._publishChanged()
            return
        self._log.info("{provider} provider: reading {what} from {endpoint}", provider=self.providerName,
                       what="swarm services" if self.swarm else "containers", endpoint=self.config.endpoint)
        if self.config.watch and not self.swarm:
            # The stream opens first and a listing follows; no event is missed.
            service.Service.startService(self)
            self._events.start()
        else:
            super().startService()

    def stopService(self) -> Any:
        self._events.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self._stream is not None:
            self._stream.stop()
        if self._listing is not None:
            self._listing.cancel()
        result = super().stopService()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            return pool.closeCachedConnections()
        return result

    # The Engine API.

    async def _get(self, path: str) -> Any:
        url = self._scheme + b"://docker" + path.encode("ascii")
        try:
            response = await self.agent.request(b"GET", url, self._headers)
            body = await readBody(response)
        except (SourceError, defer.CancelledError):
            raise
        except Exception as e:
            raise SourceError(f"cannot reach the Docker engine at {self.config.endpoint}: {_reason(e)}") from None
        if response.code != 200:
            raise SourceError(f"GET {path}: {response.code} {body[:200].decode('utf-8', 'replace')}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise SourceError(f"GET {path}: not JSON: {e}") from None

    async def _inspect(self, containerID: str) -> Container | None:
        try:
            inspected = await self._get(f"/containers/{quote(containerID, safe='')}/json")
        except SourceError as e:
            # Removed between the list and the inspection.
            self._log.debug("docker provider: {error}", error=str(e))
            return None
        return parseContainer(inspected)

    async def _fetch(self) -> DynamicConfig:
        if self.swarm:
            containers = await self._swarmContainers()
            config, problems = buildConfiguration(containers, self.settings)
            self.problems = tuple(problems)
            for problem in problems:
                self._log.error("{provider} provider: {error}", provider=self.providerName, error=str(problem))
            return config
        listed = await self._get("/containers/json?all=1")
        containers = []
        for entry in listed:
            container = await self._inspect(entry.get("Id", ""))
            if container is not None and container.name:
                containers.append(container)
        resolved: dict[str, Container] = {}
        for container in containers:
            if container.networkMode.startswith("container:"):
                target = container.networkMode.partition(":")[2]
                found = await self._inspect(target)
                if found is not None:
                    resolved[target] = found
        settings = self.settings
        if any(c.networkMode == "host" for c in containers):
            settings = attrs.evolve(settings, hostAddress=await self._hostAddress())
        config, problems = buildConfiguration(containers, settings, resolved)
        self.problems = tuple(problems)
        for problem in problems:
            self._log.error("docker provider: {error}", error=str(problem))
        return config

    async def _swarmContainers(self) -> list[Container]:
        """
        Traefik's swarm listing: each service on its virtual IPs when its
        C{lbswarm} label is true, else each of its running tasks.
        """
        services = await self._get("/services")
        scope = quote(json.dumps({"scope": ["swarm"]}), safe="")
        networks = {n.get("Id", ""): n.get("Name", "") for n in await self._get(f"/networks?filters={scope}")}
        nodes: dict[str, str] = {}
        containers: list[Container] = []
        for entry in services:
            labels = (entry.get("Spec") or {}).get("Labels") or {}
            lbswarm = _option(labels, "swarm.lbswarm") or _option(labels, "docker.lbswarm")
            if _bool(lbswarm, False):
                found = parseService(entry, networks)
                if found.networks:
                    containers.append(found)
                else:
                    self._log.warn("{provider} provider: service {service} has no virtual IP (lbswarm)",
                                   provider=self.providerName, service=found.name)
                continue
            filters = quote(json.dumps({"service": [entry.get("ID", "")], "desired-state": ["running"]}), safe="")
            for task in await self._get(f"/tasks?filters={filters}"):
                if (task.get("Status") or {}).get("State") != "running":
                    continue
                nodeID = task.get("NodeID") or ""
                if nodeID and nodeID not in nodes:
                    node = await self._get(f"/nodes/{quote(nodeID, safe='')}")
                    nodes[nodeID] = (node.get("Status") or {}).get("Addr") or ""
                found = parseTask(entry, task, networks, nodes.get(nodeID, ""))
                if found.networks or found.networkMode == "host":
                    containers.append(found)
        return containers

    async def _hostAddress(self) -> str:
        for name in _HOST_NAMES:
            try:
                return str(await self.reactor.resolve(name, timeout=(1,)))
            except Exception:
                continue
        return "127.0.0.1"

    def fetch(self) -> defer.Deferred[DynamicConfig | None]:
        return defer.Deferred.fromCoroutine(self._fetch())

    # Events.

    def _follow(self) -> defer.Deferred[None]:
        """
        One events session: open the stream, list, then list again after
        relevant events until the stream ends (which counts as a failure, so
        the poller reopens it with backoff).
        """
        return defer.Deferred.fromCoroutine(self._session())

    async def _session(self) -> None:
        filters = quote(json.dumps({"type": ["container"]}), safe="")
        url = self._scheme + b"://docker/events?filters=" + filters.encode("ascii")
        try:
            response = await self.agent.request(b"GET", url, self._headers)
        except defer.CancelledError:
            raise
        except Exception as e:
            error = SourceError(f"cannot reach the Docker engine at {self.config.endpoint}: {_reason(e)}")
            self.errors = self.describeFailure(Failure(error))
            self._publishChanged()
            raise error from None
        if response.code != 200:
            body = await readBody(response)
            raise SourceError(f"GET /events: {response.code} {body[:200].decode('utf-8', 'replace')}")
        stream = _EventStream(self._onEvent)
        self._stream = stream
        response.deliverBody(stream)
        self._events.failures = 0
        self._relist()
        await stream.done
        self._stream = None
        if self._events.running:
            raise SourceError("the Docker event stream ended")

    def _onEvent(self, event: Mapping[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        if event.get("Type", "container") != "container":
            return
        if action in _RELEVANT or action.startswith("health_status"):
            self._log.debug("docker provider: {action} {container}", action=action,
                            container=(event.get("Actor") or {}).get("Attributes", {}).get("name", ""))
            if self._pending is None or not self._pending.active():
                self._pending = self.clock.callLater(self.throttle, self._relist)

    def _relist(self) -> None:
        """
        List now, or once more after the listing under way.
        """
        self._pending = None
        if self._listing is not None:
            self._again = True
            return
        self._again = False
        d = self.poll()
        self._listing = d
        d.addCallbacks(self._listed, self._listFailed)

    def _listed(self, _: object) -> None:
        self._listing = None
        self._relistFailures = 0
        if self._again:
            self._relist()

    def _listFailed(self, failure: Failure) -> None:
        self._listing = None
        if failure.check(defer.CancelledError) or not self.running:
            return
        self._relistFailures += 1
        delay = min(60.0, 2.0 ** (self._relistFailures - 1))
        self._log.error("docker provider: listing failed ({error}); again in {delay:.0f}s",
                        error=str(failure.value) or failure.type.__name__, delay=delay)
        if self._pending is None or not self._pending.active():
            self._pending = self.clock.callLater(delay, self._relist)


class SwarmProvider(DockerProvider):
    """
    Traefik v3's C{providers.swarm}: the services of a Docker Swarm; objects
    are named C{name@swarm}.
    """

    providerName = "swarm"


def _reason(e: BaseException) -> str:
    reasons = getattr(e, "reasons", None)
    if reasons:
        return _reason(reasons[0].value)
    return str(e) or type(e).__name__

