"""
Tests for the Docker provider in Swarm mode: the translation of swarm services
and tasks (virtual IPs with C{lbswarm}, task addresses, host network tasks on
their node's address) on answers shaped like dockerd's; and against a real
one-node swarm on the private dockerd of L{tests.docker_fixture}, the provider
following services as they are created, scaled and removed, and a real relayd
process routing to a swarm service.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from relayd.config.dynamic import Server
from relayd.config.static import DockerProvider as DockerProviderConfig
from relayd.config.types import Duration
from relayd.interfaces import IProvider
from relayd.providers.base import ProviderUpdate
from relayd.providers.docker import (
    DockerProvider,
    Settings,
    SwarmProvider,
    buildConfiguration,
    parseService,
    parseTask,
)
from tests.docker_fixture import dockerEngine, removeServices
from tests.helpers import Client, RelaydProcess, freePorts, poll, tempdir, writeFile

NETWORKS = {"net1": "backend"}


def service(name: str, labels: dict[str, str], mode: str = "vip", **extra: Any) -> dict[str, Any]:
    return {
        "ID": f"id-{name}",
        "Spec": {"Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": 1}},
                 "EndpointSpec": {"Mode": mode}},
        "Endpoint": {"VirtualIPs": [{"NetworkID": "net1", "Addr": "10.0.1.2/24"}]},
        **extra,
    }


def task(slot: int, address: str = "", host: bool = False) -> dict[str, Any]:
    attachments: list[dict[str, Any]] = []
    if address:
        attachments.append({"Network": {"ID": "net1", "Spec": {"Name": "backend"}}, "Addresses": [address]})
    if host:
        attachments.append({"Network": {"ID": "hostnet", "Spec": {"Name": "host", "DriverConfiguration": {"Name": "host"}}}})
    return {"ID": f"task{slot}", "Slot": slot, "Status": {"State": "running"}, "NetworksAttachments": attachments}


PORT = {"traefik.http.services.web.loadbalancer.server.port": "8080"}


class TranslationTests(SynchronousTestCase):
    """
    Swarm services and tasks into configuration, as Traefik's swarm provider.
    """

    def test_virtualIP(self) -> None:
        """
        A service balanced by the swarm is one server on its virtual IP, with
        the default rule on the service's name.
        """
        config, errors = buildConfiguration([parseService(service("web", PORT), NETWORKS)], Settings(swarm=True))
        self.assertEqual(errors, [])
        self.assertEqual(config.http.routers["web"].rule, "Host(`web`)")
        self.assertEqual(config.http.services["web"].loadBalancer.servers, (Server(url="http://10.0.1.2:8080"),))

    def test_dnsrrHasNoVirtualIP(self) -> None:
        """
        A service in C{dnsrr} endpoint mode has no virtual IP.
        """
        self.assertEqual(parseService(service("web", PORT, mode="dnsrr"), NETWORKS).networks, ())

    def test_tasks(self) -> None:
        """
        Each task is a server on its address; tasks merge into the service
        named after the swarm service, not the task.
        """
        entry = service("web", PORT)
        containers = [parseTask(entry, task(1, "10.0.1.3/24"), NETWORKS), parseTask(entry, task(2, "10.0.1.4/24"), NETWORKS)]
        self.assertEqual([c.name for c in containers], ["web.1", "web.2"])
        config, errors = buildConfiguration(containers, Settings(swarm=True))
        self.assertEqual(errors, [])
        self.assertEqual(set(config.http.routers), {"web"})
        self.assertEqual(
            config.http.services["web"].loadBalancer.servers,
            (Server(url="http://10.0.1.3:8080"), Server(url="http://10.0.1.4:8080")),
        )

    def test_hostNetworkTask(self) -> None:
        """
        A task on the host network is reached on its node's address.
        """
        container = parseTask(service("web", PORT), task(1, host=True), NETWORKS, nodeAddress="192.0.2.7")
        config, errors = buildConfiguration([container], Settings(swarm=True))
        self.assertEqual(errors, [])
        self.assertEqual(config.http.services["web"].loadBalancer.servers, (Server(url="http://192.0.2.7:8080"),))

    def test_swarmNetworkLabel(self) -> None:
        """
        C{traefik.swarm.network} picks the network of the task's address.
        """
        entry = service("web", {**PORT, "traefik.swarm.network": "other"})
        found = task(1, "10.0.1.3/24")
        found["NetworksAttachments"].append({"Network": {"ID": "net2"}, "Addresses": ["10.0.2.3/24"]})
        container = parseTask(entry, found, {**NETWORKS, "net2": "other"})
        config, _ = buildConfiguration([container], Settings(swarm=True))
        self.assertEqual(config.http.services["web"].loadBalancer.servers, (Server(url="http://10.0.2.3:8080"),))


class ProviderTests(TestCase):
    """
    The provider against a real one-node swarm.
    """

    timeout = 90

    def setUp(self) -> None:
        self.engine = dockerEngine()
        self.engine.swarm()
        self.addCleanup(removeServices, self.engine)
        self.updates: list[ProviderUpdate] = []

    def provider(self, **options: Any) -> DockerProvider:
        config = DockerProviderConfig(endpoint=self.engine.endpoint, refreshSeconds=Duration(0.2), **options)
        provider = SwarmProvider(reactor, self.updates.append, config)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def servers(self, name: str) -> tuple[Server, ...] | None:
        if not self.updates:
            return None
        found = self.updates[-1].config.http.services.get(name)
        return None if found is None else found.loadBalancer.servers

    def test_interface(self) -> None:
        """
        The swarm provider is an L{IProvider} named C{swarm}.
        """
        provider = SwarmProvider(reactor, self.updates.append, DockerProviderConfig(endpoint=self.engine.endpoint))
        self.assertTrue(verifyObject(IProvider, provider))
        self.assertEqual(provider.providerName, "swarm")

    @defer.inlineCallbacks
    def test_followsServices(self) -> None:
        """
        A created service appears with a server per running task on its
        overlay address, scaling adds servers, and a removed service goes.
        """
        self.engine.overlay("relayd-tests")
        self.provider()
        yield poll(lambda: self.updates)
        labels = {"traefik.http.services.tasks.loadbalancer.server.port": "8080"}
        serviceID = self.engine.createService("tasks", labels, 8080, replicas=2, network="relayd-tests")
        yield poll(lambda: self.servers("tasks") and len(self.servers("tasks") or ()) == 2, timeout=30)
        self.assertEqual(set(self.updates[-1].config.http.routers), {"tasks"})
        for server in self.servers("tasks") or ():
            self.assertTrue(server.url.startswith("http://10.") and server.url.endswith(":8080"), server.url)
        self.engine.scaleService(serviceID, 3)
        yield poll(lambda: len(self.servers("tasks") or ()) == 3, timeout=30)
        self.engine.request("DELETE", f"/services/{serviceID}")
        yield poll(lambda: self.servers("tasks") is None, timeout=30)

    @defer.inlineCallbacks
    def test_lbswarm(self) -> None:
        """
        With C{traefik.swarm.lbswarm=true} the service is one server on its
        virtual IP, however many tasks it runs.
        """
        self.engine.overlay("relayd-tests")
        self.provider()
        labels = {
            "traefik.http.services.vip.loadbalancer.server.port": "8080",
            "traefik.swarm.lbswarm": "true",
        }
        serviceID = self.engine.createService("vip", labels, 8080, replicas=2, network="relayd-tests",
                                              endpointMode="vip")
        yield poll(lambda: self.servers("vip"), timeout=30)
        virtualIPs = self.engine.request("GET", f"/services/{serviceID}", decode=True)["Endpoint"]["VirtualIPs"]
        address = virtualIPs[0]["Addr"].partition("/")[0]
        self.assertEqual(self.servers("vip"), (Server(url=f"http://{address}:8080"),))


class EndToEndTests(TestCase):
    """
    A real relayd process with C{providers.docker.swarmMode} routing to a
    swarm service on the host network.
    """

    timeout = 90

    def setUp(self) -> None:
        self.engine = dockerEngine()
        self.engine.swarm()
        self.addCleanup(removeServices, self.engine)
        self.client = Client()
        self.addCleanup(self.client.close)

    def test_routesFollowServices(self) -> defer.Deferred[None]:
        """
        A labelled host-network service is routed to on its node's address
        once listed, and unrouted once removed (C{providers.docker.swarmMode}).
        """
        return self.followed(
            f"""
[providers.docker]
endpoint = "{self.engine.endpoint}"
swarmMode = true
swarmModeRefreshSeconds = "200ms"
"""
        )

    def test_swarmSection(self) -> defer.Deferred[None]:
        """
        The same through Traefik v3's own C{providers.swarm} section.
        """
        return self.followed(
            f"""
[providers.swarm]
endpoint = "{self.engine.endpoint}"
refreshSeconds = "200ms"
"""
        )

    @defer.inlineCallbacks
    def followed(self, providerSection: str) -> Any:
        web, backend = freePorts(2)
        directory = tempdir(self)
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{web}"

[providers]
providersThrottleDuration = "10ms"
{providerSection}""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        labels = {"traefik.http.services.hostweb.loadbalancer.server.port": str(backend)}
        serviceID = self.engine.createService("hostweb", labels, backend)
        url = f"http://127.0.0.1:{web}/"

        def status(want: int) -> Any:
            @defer.inlineCallbacks
            def check():
                response, body = yield self.client.get(url, host="hostweb")
                return (response, body) if response.code == want else None

            return poll(check, timeout=30)

        _, body = yield status(200)
        self.assertEqual(body, b"hostweb")
        self.engine.request("DELETE", f"/services/{serviceID}")
        yield status(404)
