"""
A fake Rancher 1.x metadata service, speaking the wire format of the real one
(as the go-rancher-metadata client reads it): GETs under C{/<prefix>/}
(C{version}, C{stacks}, C{services}, C{containers}, C{hosts}, C{self/...}, and
any path into them such as C{stacks/web/services/0/containers}); JSON when the
request accepts C{application/json}, otherwise the plain-text listing of the
real service (C{index=name} lines for lists, keys for maps, bare scalars); and
the long poll C{version?wait=true&value=V&maxWait=S}, which answers at once when
the version differs from C{V}, else when it changes or after C{S} seconds.

Tests drive it through L{RancherMetadata}: add stacks and services, scale
services, flip a container's C{health_state} or C{state}; every change bumps
the version. It runs inside trial on the test's reactor, or by hand::

    python3 tests/fakes/rancher_metadata.py --port 8090 --scenario web-test

which also reads commands on standard input (C{scale web-test 1},
C{health web-test-proxy-test-2 unhealthy}, C{state ... stopped}, C{show}).

A fake of the real API's format, not a mock of relayd's client: nothing here
knows what relayd asks for.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web import resource, server

_JSON = b"application/json"


class RancherMetadata:
    """
    The metadata of one fake Rancher environment and the version that names
    it. Names follow Rancher's: a service's containers are
    C{<stack>-<service>-<n>}, numbered from 1.
    """

    def __init__(self, clock: IReactorTime, prefix: str = "latest", environment: str = "Default") -> None:
        self.clock = clock
        self.prefix = prefix
        self.environment = environment
        self._counter = 0
        self.version = "0"
        self.stacks: list[dict[str, Any]] = []
        self.hosts: list[dict[str, Any]] = [
            {
                "name": "host-1",
                "hostname": "host-1",
                "agent_ip": "127.0.0.1",
                "uuid": "host-uuid-1",
                "host_id": 1,
                "labels": {},
                "state": "active",
                "environment_uuid": "env-uuid-1",
                "memory": 0,
                "milli_cpu": 0,
                "local_storage_mb": 0,
            }
        ]
        self._waiting: list[defer.Deferred[str]] = []
        # Every request (URI and Accept header), for tests that check what was asked.
        self.requests: list[tuple[str, str]] = []

    # Changes.

    def _bump(self) -> None:
        self._counter += 1
        self.version = str(self._counter)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.version)

    def stack(self, name: str) -> dict[str, Any]:
        for stack in self.stacks:
            if stack["name"] == name:
                return stack
        raise KeyError(f"no stack {name!r}")

    def service(self, stack: str, name: str) -> dict[str, Any]:
        for service in self.stack(stack)["services"]:
            if service["name"] == name:
                return service
        raise KeyError(f"no service {name!r} in stack {stack!r}")

    def container(self, name: str) -> dict[str, Any]:
        for stack in self.stacks:
            for service in stack["services"]:
                for container in service["containers"]:
                    if container["name"] == name:
                        return container
        raise KeyError(f"no container {name!r}")

    def addStack(self, name: str, system: bool = False) -> dict[str, Any]:
        stack = {
            "name": name,
            "uuid": f"stack-uuid-{name}",
            "environment_name": self.environment,
            "environment_uuid": "env-uuid-1",
            "system": system,
            "services": [],
        }
        self.stacks.append(stack)
        self._bump()
        return stack

    def addService(
        self,
        stack: str,
        name: str,
        labels: dict[str, str] | None = None,
        ports: Iterable[str] = (),
        state: str = "active",
        healthCheck: bool = True,
        kind: str = "service",
    ) -> dict[str, Any]:
        """
        Add a service with no containers (scale it with L{scale}). With
        C{healthCheck}, new containers start C{initializing} as in Rancher
        unless L{scale} is told otherwise.
        """
        try:
            self.stack(stack)
        except KeyError:
            self.addStack(stack)
        service = {
            "name": name,
            "stack_name": stack,
            "stack_uuid": f"stack-uuid-{stack}",
            "kind": kind,
            "uuid": f"service-uuid-{stack}-{name}",
            "state": state,
            "scale": 0,
            "labels": dict(labels or {}),
            "ports": list(ports),
            "containers": [],
            "fqdn": "",
            "hostname": "",
            "vip": "",
            "create_index": 0,
            "external_ips": None,
            "sidekicks": None,
            "links": None,
            "metadata": {},
            "token": "",
            "health_check": (
                {"healthy_threshold": 2, "interval": 2000, "port": 0, "request_line": 'GET "/" "HTTP/1.0"',
                 "response_timeout": 2000, "unhealthy_threshold": 3}
                if healthCheck
                else {"healthy_threshold": 0, "interval": 0, "port": 0, "request_line": "",
                      "response_timeout": 0, "unhealthy_threshold": 0}
            ),
            "primary_service_name": name,
            "lb_config": {"certificate_ids": None, "default_certificate_id": "", "port_rules": None,
                          "config": "", "stickiness_policy": {}},
            "environment_uuid": "env-uuid-1",
            "environment_name": self.environment,
            "system": False,
            "selector": "",
            "_healthCheck": healthCheck,
        }
        self.stack(stack)["services"].append(service)
        self._bump()
        return service

    def scale(
        self,
        stack: str,
        name: str,
        count: int,
        ips: Iterable[str] = (),
        healthState: str | None = None,
        state: str = "running",
    ) -> list[dict[str, Any]]:
        """
        Scale a service to C{count} containers: new ones take the next of
        C{ips} (default 10.42.0.<n>) and C{healthState} (default C{healthy}
        for a service with a health check, empty without); scaling down
        removes the newest first, as Rancher does.
        """
        service = self.service(stack, name)
        containers = service["containers"]
        freeIPs = [ip for ip in ips if ip not in {c["primary_ip"] for c in containers}]
        while len(containers) > count:
            containers.pop()
        while len(containers) < count:
            index = max([int(c["service_index"]) for c in containers], default=0) + 1
            ip = freeIPs.pop(0) if freeIPs else f"10.42.0.{index}"
            if healthState is None:
                health = "healthy" if service["_healthCheck"] else ""
            else:
                health = healthState
            containers.append(self._container(service, index, ip, health, state))
        service["scale"] = count
        self._bump()
        return containers

    def _container(self, service: dict[str, Any], index: int, ip: str, health: str, state: str) -> dict[str, Any]:
        stack, name = service["stack_name"], service["name"]
        return {
            "name": f"{stack}-{name}-{index}",
            "primary_ip": ip,
            "primary_mac_address": "02:00:00:00:00:%02x" % (index % 256),
            "ips": [ip],
            "ports": [],
            "service_name": name,
            "service_index": str(index),
            "stack_name": stack,
            "stack_uuid": service["stack_uuid"],
            "labels": {
                "io.rancher.stack.name": stack,
                "io.rancher.stack_service.name": f"{stack}/{name}",
                "io.rancher.container.name": f"{stack}-{name}-{index}",
                **service["labels"],
            },
            "create_index": index,
            "host_uuid": self.hosts[0]["uuid"],
            "uuid": f"container-uuid-{stack}-{name}-{index}",
            "state": state,
            "health_state": health,
            "external_id": "",
            "start_count": 1,
            "memory_reservation": 0,
            "milli_cpu_reservation": 0,
            "dns": ["169.254.169.250"],
            "dns_search": [],
            "health_check_hosts": [],
            "network_from_container_uuid": "",
            "network_uuid": "network-uuid-managed",
            "links": {},
            "system": False,
            "environment_uuid": "env-uuid-1",
            "health_check": service["health_check"],
            "environment_name": self.environment,
            "service_uuid": service["uuid"],
        }

    def setContainer(self, name: str, healthState: str | None = None, state: str | None = None) -> None:
        """
        Change a container's C{health_state} and/or C{state}.
        """
        container = self.container(name)
        if healthState is not None:
            container["health_state"] = healthState
        if state is not None:
            container["state"] = state
        self._bump()

    def setService(self, stack: str, name: str, state: str | None = None,
                   labels: dict[str, str] | None = None) -> None:
        """
        Change a service's C{state} and/or replace its labels.
        """
        service = self.service(stack, name)
        if state is not None:
            service["state"] = state
        if labels is not None:
            service["labels"] = dict(labels)
        self._bump()

    def removeService(self, stack: str, name: str) -> None:
        services = self.stack(stack)["services"]
        services.remove(self.service(stack, name))
        self._bump()

    # Reading.

    def document(self) -> dict[str, Any]:
        """
        The whole tree as the service answers it under C{/<prefix>/}.
        """
        stacks = [_public(s) for s in self.stacks]
        services = [svc for s in stacks for svc in s["services"]]
        containers = [c for svc in services for c in svc["containers"]]
        selfStack = stacks[0] if stacks else {}
        selfService = selfStack.get("services", [{}])[0] if selfStack.get("services") else {}
        selfContainer = selfService.get("containers", [{}])[0] if selfService.get("containers") else {}
        return {
            "version": self.version,
            "stacks": stacks,
            "services": services,
            "containers": containers,
            "hosts": copy.deepcopy(self.hosts),
            "networks": [{"name": "managed", "uuid": "network-uuid-managed", "environment_uuid": "env-uuid-1",
                          "metadata": {}, "host_ports": True, "is_default": True, "default_policy_action": "allow"}],
            "self": {"stack": selfStack, "service": selfService, "container": selfContainer,
                     "host": copy.deepcopy(self.hosts[0])},
        }

    def waitForChange(self, value: str, maxWait: float) -> defer.Deferred[str]:
        """
        The version once it differs from C{value}, or after C{maxWait}
        seconds whatever it is.
        """
        if value != self.version:
            return defer.succeed(self.version)
        d: defer.Deferred[str] = defer.Deferred(lambda d: self._forget(d))
        self._waiting.append(d)
        timer = self.clock.callLater(maxWait, self._expire, d)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def _forget(self, d: defer.Deferred[str]) -> None:
        if d in self._waiting:
            self._waiting.remove(d)

    def _expire(self, d: defer.Deferred[str]) -> None:
        self._forget(d)
        if not d.called:
            d.callback(self.version)


def _public(value: Any) -> Any:
    """
    A deep copy without the fake's own bookkeeping keys (C{_...}).
    """
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def _walk(node: Any, segments: list[str]) -> Any:
    """
    Follow a path into the tree: map keys, list indices, or list items by
    C{name} (C{stacks/web/services/app}), as the real service allows.
    """
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list):
            if segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
                continue
            named = [item for item in node if isinstance(item, dict) and item.get("name") == segment]
            if not named:
                raise KeyError(segment)
            node = named[0]
        else:
            raise KeyError(segment)
    return node


def _text(node: Any) -> bytes:
    """
    The real service's plain-text form: lists as C{index=name} lines (or
    the items), maps as their keys (C{key/} for nested ones), scalars bare.
    """
    if isinstance(node, list):
        lines = []
        for i, item in enumerate(node):
            if isinstance(item, dict):
                lines.append(f"{i}={item.get('name', i)}")
            else:
                lines.append(str(item))
        return ("\n".join(lines)).encode("utf-8")
    if isinstance(node, dict):
        keys = [f"{k}/" if isinstance(v, (dict, list)) else k for k, v in node.items()]
        return ("\n".join(keys)).encode("utf-8")
    if node is None:
        return b""
    if isinstance(node, bool):
        return b"true" if node else b"false"
    return str(node).encode("utf-8")


class MetadataResource(resource.Resource):
    """
    The HTTP face of a L{RancherMetadata}.
    """

    isLeaf = True

    def __init__(self, metadata: RancherMetadata) -> None:
        super().__init__()
        self.metadata = metadata

    def render_GET(self, request: server.Request) -> Any:
        path = request.path.decode("utf-8", "replace")
        segments = [s for s in path.split("/") if s]
        accept = request.getHeader(b"accept") or b""
        self.metadata.requests.append((request.uri.decode("utf-8", "replace"), accept.decode("latin-1")))
        if not segments or segments[0] != self.metadata.prefix:
            return self._notFound(request)
        segments = segments[1:]
        wantsJSON = _JSON in accept
        args = request.args
        if segments == ["version"] and args.get(b"wait", [b""])[0] == b"true":
            value = args.get(b"value", [b""])[0].decode("utf-8", "replace")
            try:
                maxWait = float(args.get(b"maxWait", [b"0"])[0])
            except ValueError:
                maxWait = 0.0
            d = self.metadata.waitForChange(value, max(0.0, maxWait))
            request.notifyFinish().addErrback(lambda _: d.cancel())

            def answer(version: str) -> None:
                request.write(self._body(request, version, wantsJSON))
                request.finish()

            d.addCallback(answer)
            d.addErrback(lambda f: f.trap(defer.CancelledError))
            return server.NOT_DONE_YET
        try:
            node = _walk(self.metadata.document(), segments)
        except KeyError:
            return self._notFound(request)
        return self._body(request, node, wantsJSON)

    def _body(self, request: server.Request, node: Any, wantsJSON: bool) -> bytes:
        if wantsJSON:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(node).encode("utf-8")
        request.setHeader(b"content-type", b"text/plain")
        return _text(node)

    def _notFound(self, request: server.Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain")
        return b"Not found"


def listen(metadata: RancherMetadata, reactor: Any, port: int = 0, interface: str = "127.0.0.1") -> Any:
    """
    Serve C{metadata} on C{interface:port}; returns the listening port.
    """
    site = server.Site(MetadataResource(metadata))
    site.noisy = False
    return reactor.listenTCP(port, site, interface=interface)


# By hand.


def webTestScenario(metadata: RancherMetadata, ips: list[str], port: int) -> None:
    """
    The Rancher blog's walkthrough: stack C{proxy-test}, service C{web-test}
    with Traefik 1.x labels (domain C{local}, the given port, enabled) and a
    health check, scaled to one container per IP, all healthy.
    """
    metadata.addService(
        "proxy-test",
        "web-test",
        labels={"traefik.domain": "local", "traefik.port": str(port), "traefik.enable": "true",
                "io.rancher.container.hostname_override": "container_name"},
    )
    metadata.scale("proxy-test", "web-test", len(ips), ips=ips)


def _command(metadata: RancherMetadata, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    try:
        if words[0] == "scale" and len(words) in (3, 4):
            stack = words[3] if len(words) == 4 else metadata.stacks[0]["name"]
            containers = metadata.scale(stack, words[1], int(words[2]),
                                        ips=[f"127.0.0.{n}" for n in range(2, 255)])
            return " ".join(c["name"] + "@" + c["primary_ip"] for c in containers) or "no containers"
        if words[0] in ("health", "state") and len(words) == 3:
            if words[0] == "health":
                metadata.setContainer(words[1], healthState=words[2])
            else:
                metadata.setContainer(words[1], state=words[2])
            return "ok"
        if words[0] == "show":
            return json.dumps([
                {"service": f"{s['name']}.{st['name']}",
                 "containers": [(c["name"], c["primary_ip"], c["state"], c["health_state"])
                                for c in s["containers"]]}
                for st in metadata.stacks for s in st["services"]
            ], indent=1)
    except (KeyError, ValueError, IndexError) as e:
        return f"error: {e}"
    return ("commands: scale <service> <n> [stack] | health <container> <state> | "
            "state <container> <state> | show")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Rancher 1.x metadata service.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--prefix", default="latest")
    parser.add_argument("--scenario", choices=["empty", "web-test"], default="web-test")
    parser.add_argument("--backend-port", type=int, default=8080,
                        help="web-test: the traefik.port label (the containers' port)")
    parser.add_argument("--ips", default="127.0.0.2,127.0.0.3,127.0.0.4",
                        help="web-test: the containers' primary_ip, comma-separated")
    options = parser.parse_args(argv)

    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    metadata = RancherMetadata(reactor, prefix=options.prefix)
    if options.scenario == "web-test":
        webTestScenario(metadata, [ip for ip in options.ips.split(",") if ip], options.backend_port)
    listen(metadata, reactor, options.port, options.interface)

    class Commands(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.sendLine(f"fake rancher-metadata on http://{options.interface}:{options.port}/"
                          f"{options.prefix} (version {metadata.version})".encode())

        def lineReceived(self, line: bytes) -> None:
            answer = _command(metadata, line.decode("utf-8", "replace"))
            if answer:
                self.sendLine(f"{answer} (version {metadata.version})".encode())

        def connectionLost(self, reason: Any = None) -> None:
            pass

    stdio.StandardIO(Commands())
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
