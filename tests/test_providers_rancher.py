"""
Tests for the Rancher 1.x metadata provider and for the fake metadata service
it is tested against.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from relayd.config.static import RancherProvider as RancherProviderConfig
from relayd.providers.base import ProviderUpdate
from relayd.providers.rancher import RancherProvider, buildConfiguration
from tests.fakes.rancher_metadata import RancherMetadata, listen
from tests.helpers import Client, RelaydProcess, freePorts, poll, tempdir, writeFile


async def _get(url: str, json_: bool = True) -> tuple[int, bytes]:
    headers = Headers()
    if json_:
        headers.setRawHeaders(b"accept", [b"application/json"])
    response = await Agent(reactor).request(b"GET", url.encode(), headers)
    return response.code, await readBody(response)


class FakeMetadataTests(unittest.TestCase):
    """
    The fake answers as the real metadata service does.
    """

    def setUp(self) -> None:
        self.metadata = RancherMetadata(reactor)
        self.metadata.addService("shop", "web", labels={"traefik.port": "80"})
        self.metadata.scale("shop", "web", 2, ips=["10.0.0.5", "10.0.0.6"])
        port = listen(self.metadata, reactor)
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}/latest"

    @defer.inlineCallbacks
    def test_stacksJSON(self) -> Any:
        """
        C{/stacks} with C{Accept: application/json} is the stacks with their
        services and the services' containers inline.
        """
        code, body = yield defer.Deferred.fromCoroutine(_get(self.base + "/stacks"))
        self.assertEqual(code, 200)
        stacks = json.loads(body)
        self.assertEqual([s["name"] for s in stacks], ["shop"])
        web = stacks[0]["services"][0]
        self.assertEqual((web["name"], web["state"], web["labels"]), ("web", "active", {"traefik.port": "80"}))
        self.assertEqual(
            [(c["name"], c["primary_ip"], c["state"], c["health_state"]) for c in web["containers"]],
            [("shop-web-1", "10.0.0.5", "running", "healthy"), ("shop-web-2", "10.0.0.6", "running", "healthy")],
        )

    @defer.inlineCallbacks
    def test_pathsAndText(self) -> Any:
        """
        Paths lead into the tree by key, index or name; without the JSON
        Accept header lists are C{index=name} lines; unknown paths are 404.
        """
        code, body = yield defer.Deferred.fromCoroutine(_get(self.base + "/stacks", json_=False))
        self.assertEqual((code, body), (200, b"0=shop"))
        code, body = yield defer.Deferred.fromCoroutine(
            _get(self.base + "/stacks/shop/services/web/containers/1/primary_ip", json_=False))
        self.assertEqual((code, body), (200, b"10.0.0.6"))
        code, body = yield defer.Deferred.fromCoroutine(_get(self.base + "/containers"))
        self.assertEqual(len(json.loads(body)), 2)
        code, _ = yield defer.Deferred.fromCoroutine(_get(self.base + "/nothing"))
        self.assertEqual(code, 404)
        code, _ = yield defer.Deferred.fromCoroutine(_get(self.base.replace("/latest", "/2015-07-25") + "/stacks"))
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_longPoll(self) -> Any:
        """
        C{version?wait=true} answers at once for another version, holds
        until a change for the current one, and answers the unchanged
        version after maxWait.
        """
        current = self.metadata.version
        code, body = yield defer.Deferred.fromCoroutine(
            _get(self.base + "/version?wait=true&value=init&maxWait=30"))
        self.assertEqual(json.loads(body), current)
        waiting = defer.Deferred.fromCoroutine(
            _get(self.base + f"/version?wait=true&value={current}&maxWait=30"))
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertFalse(waiting.called)
        self.metadata.setContainer("shop-web-1", healthState="unhealthy")
        code, body = yield waiting
        self.assertNotEqual(json.loads(body), current)
        self.assertEqual(json.loads(body), self.metadata.version)
        code, body = yield defer.Deferred.fromCoroutine(
            _get(self.base + f"/version?wait=true&value={self.metadata.version}&maxWait=0.2"))
        self.assertEqual((code, json.loads(body)), (200, self.metadata.version))

    def test_scale(self) -> None:
        """
        Scaling adds containers named C{<stack>-<service>-<n>} and removes
        the newest first; every change bumps the version.
        """
        before = self.metadata.version
        self.metadata.scale("shop", "web", 3, ips=["10.0.0.7"])
        self.assertNotEqual(self.metadata.version, before)
        names = [c["name"] for c in self.metadata.service("shop", "web")["containers"]]
        self.assertEqual(names, ["shop-web-1", "shop-web-2", "shop-web-3"])
        self.metadata.scale("shop", "web", 1)
        names = [c["name"] for c in self.metadata.service("shop", "web")["containers"]]
        self.assertEqual(names, ["shop-web-1"])


# The translation.


def _service(
    name: str = "web",
    labels: dict[str, str] | None = None,
    containers: list[tuple[str, str, str]] = (("10.0.0.5", "running", "healthy"),),  # type: ignore[assignment]
    state: str = "active",
    ports: list[str] | None = None,
) -> dict[str, Any]:
    """
    A service as C{/stacks} carries it (only the fields that matter here).
    """
    return {
        "name": name,
        "state": state,
        "labels": labels if labels is not None else {},
        "ports": ports or [],
        "containers": [
            {"name": f"{name}-{i}", "primary_ip": ip, "state": st, "health_state": health}
            for i, (ip, st, health) in enumerate(containers, 1)
        ],
    }


def _build(*services: dict[str, Any], stack: str = "shop", **options: Any) -> tuple[Any, list[Any]]:
    config = RancherProviderConfig(**options)
    return buildConfiguration([{"name": stack, "services": list(services)}], config)


def _servers(config: Any, service: str) -> list[tuple[str, int | None]]:
    return [(s.url, s.weight) for s in config.http.services[service].loadBalancer.servers]


V1 = {"traefik.enable": "true", "traefik.port": "8080", "traefik.domain": "local"}


class TranslationTests(unittest.SynchronousTestCase):
    """
    L{buildConfiguration} makes of C{/stacks} what Traefik makes of it.
    """

    def test_v1Labels(self) -> None:
        """
        Traefik 1.x labels give a router with the rule
        C{Host:<service>.<stack>.<domain>} and a service named
        C{<service>-<stack>} with one server per kept container at
        C{http://<primary_ip>:<traefik.port>}, weighted by C{traefik.weight}.
        """
        config, problems = _build(
            _service("web-test", {**V1, "traefik.weight": "3"},
                     containers=[("10.0.0.5", "running", "healthy"), ("10.0.0.6", "running", "healthy")]),
            stack="proxy-test",
        )
        self.assertEqual(problems, [])
        self.assertEqual(config.http.routers["web-test-proxy-test"].rule, "Host(`web-test.proxy-test.local`)")
        self.assertEqual(config.http.routers["web-test-proxy-test"].service, "web-test-proxy-test")
        self.assertEqual(_servers(config, "web-test-proxy-test"),
                         [("http://10.0.0.5:8080", 3), ("http://10.0.0.6:8080", 3)])

    def test_v1DomainAndProtocol(self) -> None:
        """
        The provider's C{domain} applies without C{traefik.domain}; names are
        lower-cased in the rule; C{traefik.protocol} is the servers' scheme;
        an explicit C{traefik.frontend.rule} wins.
        """
        config, _ = _build(
            _service("Web", {"traefik.port": "443", "traefik.protocol": "https"}), stack="Shop", domain="example.org"
        )
        self.assertEqual(config.http.routers["Web-Shop"].rule, "Host(`web.shop.example.org`)")
        self.assertEqual(_servers(config, "Web-Shop"), [("https://10.0.0.5:443", None)])
        config, _ = _build(_service("web", {"traefik.port": "80", "traefik.frontend.rule": "Host:a.example"}))
        self.assertEqual(config.http.routers["web-shop"].rule, "Host(`a.example`)")

    def test_v1PortRequired(self) -> None:
        """
        A service with v1 labels and no C{traefik.port} is not exposed, and
        the problem says why.
        """
        config, problems = _build(_service("web", {"traefik.domain": "local"}))
        self.assertTrue(config.isEmpty())
        self.assertEqual([p.path for p in problems], ["rancher service web.shop: label traefik.port"])

    def test_containerFilter(self) -> None:
        """
        Only containers whose health is empty, healthy or updating-healthy and
        whose state is empty, running, updating-running or upgraded serve.
        """
        containers = [
            ("10.0.0.1", "running", "healthy"),
            ("10.0.0.2", "running", ""),
            ("10.0.0.3", "updating-running", "updating-healthy"),
            ("10.0.0.4", "upgraded", "healthy"),
            ("10.0.0.5", "running", "unhealthy"),
            ("10.0.0.6", "running", "initializing"),
            ("10.0.0.7", "stopped", "healthy"),
            ("10.0.0.8", "starting", ""),
        ]
        config, _ = _build(_service("web", V1, containers=containers))
        self.assertEqual([u for u, _ in _servers(config, "web-shop")],
                         [f"http://10.0.0.{n}:8080" for n in (1, 2, 3, 4)])

    def test_noContainers(self) -> None:
        """
        A service with no container to serve keeps its router and an empty
        load balancer (relayd answers 503, as Traefik).
        """
        config, problems = _build(_service("web", V1, containers=[("10.0.0.1", "running", "unhealthy")]))
        self.assertEqual(problems, [])
        self.assertIn("web-shop", config.http.routers)
        self.assertEqual(_servers(config, "web-shop"), [])

    def test_exposedByDefault(self) -> None:
        """
        C{traefik.enable} decides, else C{exposedByDefault}.
        """
        config, _ = _build(_service("a", {"traefik.port": "80"}), _service("b", {**V1, "traefik.enable": "false"}))
        self.assertEqual(sorted(config.http.services), ["a-shop"])
        config, _ = _build(_service("a", {"traefik.port": "80"}), _service("b", V1), exposedByDefault=False)
        self.assertEqual(sorted(config.http.services), ["b-shop"])

    def test_constraints(self) -> None:
        """
        C{constraints} keeps only the services whose labels match; one that
        does not parse exposes nothing and says why.
        """
        services = [_service("a", {**V1, "zone": "edge"}), _service("b", V1)]
        config, problems = _build(*services, constraints="Label(`zone`, `edge`)")
        self.assertEqual((sorted(config.http.services), problems), (["a-shop"], []))
        config, _ = _build(*services, constraints="!Label(`zone`, `edge`)")
        self.assertEqual(sorted(config.http.services), ["b-shop"])
        config, problems = _build(*services, constraints="Label(`zone`")
        self.assertEqual(config.http.services, {})
        self.assertEqual([p.path for p in problems], ["providers.rancher.constraints"])

    def test_serviceHealthFilter(self) -> None:
        """
        With C{enableServiceHealthFilter} (the default), services that are
        not active, updating-active, upgraded or upgrading are left out.
        """
        services = [_service("a", V1, state="inactive"), _service("b", V1, state="upgrading")]
        config, _ = _build(*services)
        self.assertEqual(sorted(config.http.services), ["b-shop"])
        config, _ = _build(*services, enableServiceHealthFilter=False)
        self.assertEqual(sorted(config.http.services), ["a-shop", "b-shop"])

    def test_v2Labels(self) -> None:
        """
        Without v1 labels, the default rule is Traefik 2.x's
        C{Host(`{{ normalize .Name }}`)} with the name C{<service>_<stack>},
        and the port is the first of the service's C{ports} (the container
        side) unless a server port label says otherwise.
        """
        config, problems = _build(_service("web", {}, ports=["8000:80/tcp"]))
        self.assertEqual(problems, [])
        self.assertEqual(config.http.routers["web-shop"].rule, "Host(`web-shop`)")
        self.assertEqual(_servers(config, "web-shop"), [("http://10.0.0.5:80", None)])
        labels = {
            "traefik.http.routers.site.rule": "Host(`site.example`)",
            "traefik.http.services.site.loadbalancer.server.port": "9000",
        }
        config, _ = _build(_service("web", labels, ports=["8000:80/tcp"]))
        self.assertEqual(config.http.routers["site"].rule, "Host(`site.example`)")
        self.assertEqual(_servers(config, "site"), [("http://10.0.0.5:9000", None)])

    def test_defaultRuleTemplate(self) -> None:
        """
        A C{defaultRule} template sees C{.Name}, C{.Service}, C{.Stack},
        C{.Domain} and C{.Labels}.
        """
        config, _ = _build(
            _service("web", {"team": "blue"}, ports=["80"]),
            defaultRule="Host(`{{ .Service }}.{{ .Stack }}.{{ .Domain }}`) && Header(`X-Team`, `{{ index .Labels \"team\" }}`)",
            domain="example.org",
        )
        self.assertEqual(config.http.routers["web-shop"].rule,
                         "Host(`web.shop.example.org`) && Header(`X-Team`, `blue`)")

    def test_v2PortMissing(self) -> None:
        """
        A v2 service with no port anywhere is not exposed, even when it has
        no containers.
        """
        for containers in ([("10.0.0.5", "running", "")], []):
            config, problems = _build(_service("web", {}, containers=containers))
            self.assertTrue(config.isEmpty())
            self.assertEqual(len(problems), 1)
            self.assertIn("port is missing", problems[0].message)

    def test_badLabels(self) -> None:
        """
        A service whose labels do not decode is skipped with the problem;
        the others are kept.
        """
        config, problems = _build(
            _service("bad", {"traefik.http.routers.r.priority": "high"}, ports=["80"]),
            _service("good", V1),
        )
        self.assertEqual(sorted(config.http.services), ["good-shop"])
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].path.startswith("rancher service bad.shop: label "), problems[0].path)


# The provider against the fake, in process.


class ProviderTests(unittest.TestCase):
    """
    L{RancherProvider} reads the metadata service as Traefik does.
    """

    def setUp(self) -> None:
        self.metadata = RancherMetadata(reactor)
        self.metadata.addService("shop", "web", labels=V1)
        self.metadata.scale("shop", "web", 1, ips=["10.0.0.5"])
        self.port = listen(self.metadata, reactor)
        self.addCleanup(lambda: self.port.stopListening() if self.port is not None else None)
        self.updates: list[ProviderUpdate] = []

    def start(self, **options: Any) -> RancherProvider:
        config = RancherProviderConfig(endpoint=f"http://127.0.0.1:{self.port.getHost().port}", **options)
        provider = RancherProvider(reactor, self.updates.append, config)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def servers(self) -> list[str]:
        if not self.updates or "web-shop" not in self.updates[-1].config.http.services:
            return []
        return [s.url for s in self.updates[-1].config.http.services["web-shop"].loadBalancer.servers]

    @defer.inlineCallbacks
    def test_longPoll(self) -> Any:
        """
        With C{watch}, the provider long-polls the version with JSON accepted
        and reads C{/stacks} again as soon as it changes.
        """
        self.start(refreshSeconds=30)
        yield poll(lambda: self.servers() == ["http://10.0.0.5:8080"], timeout=5)
        self.metadata.scale("shop", "web", 2, ips=["10.0.0.6"])
        yield poll(lambda: self.servers() == ["http://10.0.0.5:8080", "http://10.0.0.6:8080"], timeout=2)
        paths = [p for p, _ in self.metadata.requests]
        self.assertIn("/latest/stacks", paths)
        self.assertIn("/latest/version?wait=true&value=init&maxWait=30", paths)
        self.assertTrue(any(p.startswith("/latest/version?wait=true&value=") and "init" not in p for p in paths))
        self.assertTrue(all(accept == "application/json" for _, accept in self.metadata.requests))
        self.assertEqual(self.updates[-1].errors, ())

    @defer.inlineCallbacks
    def test_failureKeepsLastGood(self) -> Any:
        """
        When the metadata service goes away, the last good configuration
        stays, with the error; when it is back, the error goes.
        """
        provider = self.start(refreshSeconds=1)
        yield poll(lambda: self.servers() == ["http://10.0.0.5:8080"], timeout=5)
        portNumber = self.port.getHost().port
        yield self.port.stopListening()
        self.port = None
        yield poll(lambda: self.updates[-1].errors, timeout=10)
        self.assertEqual(self.servers(), ["http://10.0.0.5:8080"])
        self.assertEqual(self.updates[-1].errors[0].path, "providers.rancher")
        self.metadata.scale("shop", "web", 0)
        self.port = listen(self.metadata, reactor, portNumber)
        yield poll(lambda: not self.updates[-1].errors and self.servers() == [], timeout=10)
        self.assertIsNotNone(provider.version)

    @defer.inlineCallbacks
    def test_watchFalse(self) -> Any:
        """
        Without C{watch}, the stacks are read once.
        """
        self.start(watch=False)
        yield poll(lambda: self.servers() == ["http://10.0.0.5:8080"], timeout=5)
        self.metadata.scale("shop", "web", 0)
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.servers(), ["http://10.0.0.5:8080"])
        self.assertEqual([p for p, _ in self.metadata.requests].count("/latest/stacks"), 1)

    @defer.inlineCallbacks
    def test_intervalPoll(self) -> Any:
        """
        With C{intervalPoll}, the version is read (without waiting) every
        C{refreshSeconds}, and the stacks when it changed.
        """
        self.start(intervalPoll=True, refreshSeconds=1)
        yield poll(lambda: self.servers() == ["http://10.0.0.5:8080"], timeout=5)
        self.metadata.scale("shop", "web", 0)
        yield poll(lambda: self.servers() == [], timeout=5)
        self.assertFalse(any("wait" in p for p, _ in self.metadata.requests))


# End to end: a real relayd, the fake metadata service, real backends.


def _sameBackendPort(ips: list[str]) -> tuple[int, list[tuple[Any, Any]]]:
    """
    Echo backends on each of C{ips} (loopback addresses) at one port, as the
    containers of a Rancher service all listen on C{traefik.port}.
    """
    from twisted.internet.error import CannotListenError
    from twisted.web import server as webServer

    from tests.helpers import EchoResource

    for _ in range(10):
        (port,) = freePorts(1)
        started: list[tuple[Any, Any]] = []
        try:
            for ip in ips:
                echo = EchoResource(ip)
                site = webServer.Site(echo)
                site.noisy = False
                started.append((reactor.listenTCP(port, site, interface=ip), echo))
        except CannotListenError:
            for listening, _ in started:
                listening.stopListening()
            continue
        return port, started
    raise unittest.SkipTest("no port free on all of " + ", ".join(ips))


class EndToEndTests(unittest.TestCase):
    """
    A real relayd follows a Rancher service as it scales and its containers'
    health changes, without failing a request a healthy container could
    serve.
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_scaleAndHealth(self) -> Any:
        """
        The seed-002 setup (C{web-test} in stack C{proxy-test} with
        C{traefik.enable}, C{traefik.port}, C{traefik.domain=local}): scaled
        1 → 3 the new containers get traffic, an unhealthy one stops getting
        it and gets it again when healthy, a stopped one stops getting it;
        with no container to serve (scaled down to the stopped one, then to
        0) the route answers 503, and with the service removed 404. Each change shows within a second
        (one long poll), and no request fails while a healthy container is
        there.
        """
        ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        backendPort, backends = _sameBackendPort(ips)
        for listening, _ in backends:
            self.addCleanup(listening.stopListening)
        metadata = RancherMetadata(reactor)
        metadata.addService("proxy-test", "web-test", labels={
            "traefik.enable": "true", "traefik.port": str(backendPort), "traefik.domain": "local",
            "io.rancher.container.hostname_override": "container_name",
        })
        metadata.scale("proxy-test", "web-test", 1, ips=ips)
        fake = listen(metadata, reactor)
        self.addCleanup(fake.stopListening)
        directory = tempdir(self)
        (web,) = freePorts(1)
        writeFile(os.path.join(directory, "relayd.toml"), f"""
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"

[providers]
providersThrottleDuration = "10ms"

[providers.rancher]
endpoint = "http://127.0.0.1:{fake.getHost().port}"
refreshSeconds = 5
""")
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        client = Client()
        self.addCleanup(client.close)
        url = f"http://127.0.0.1:{web}/"
        host = "web-test.proxy-test.local"
        # (phase, status, backend) of every request of the loop.
        seen: list[tuple[str, int, str]] = []
        state = {"phase": "start", "running": True}

        @defer.inlineCallbacks
        def loop() -> Any:
            while state["running"]:
                phase = state["phase"]
                try:
                    response, _ = yield client.get(url, host=host)
                except Exception as e:
                    seen.append((phase, 0, type(e).__name__))
                else:
                    name = response.headers.getRawHeaders(b"x-backend", [b""])[0].decode()
                    seen.append((phase, response.code, name))
                yield task.deferLater(reactor, 0.01, lambda: None)

        def recent(count: int = 30) -> list[tuple[str, int, str]]:
            return [s for s in seen[-count:] if s[0] == state["phase"]]

        @defer.inlineCallbacks
        def change(phase: str, act: Any, reached: Any) -> Any:
            state["phase"] = phase
            before = len(seen)
            started = time.monotonic()
            act()
            yield poll(lambda: len(seen) > before + 30 and reached(seen[-30:]), timeout=10, interval=0.02)
            return time.monotonic() - started

        yield poll(lambda: defer.maybeDeferred(client.get, url, host=host).addCallback(
            lambda r: r[0].code == 200), timeout=30)
        looping = loop()

        def stopLoop() -> Any:
            state["running"] = False
            return looping

        self.addCleanup(stopLoop)
        delays = {}
        delays["scale 3"] = yield change(
            "three", lambda: metadata.scale("proxy-test", "web-test", 3, ips=ips),
            lambda last: {b for _, _, b in last} == set(ips))
        delays["unhealthy"] = yield change(
            "unhealthy", lambda: metadata.setContainer("proxy-test-web-test-2", healthState="unhealthy"),
            lambda last: {b for _, _, b in last} == {"127.0.0.1", "127.0.0.3"})
        delays["healthy again"] = yield change(
            "healthy", lambda: metadata.setContainer("proxy-test-web-test-2", healthState="healthy"),
            lambda last: {b for _, _, b in last} == set(ips))
        delays["stopped"] = yield change(
            "stopped", lambda: metadata.setContainer("proxy-test-web-test-1", state="stopped"),
            lambda last: {b for _, _, b in last} == {"127.0.0.2", "127.0.0.3"})
        delays["scale 1"] = yield change(
            "one", lambda: metadata.scale("proxy-test", "web-test", 1),
            lambda last: all(code == 503 for _, code, _ in last))
        # Scaling down removes the newest containers: the one left is the
        # stopped one, so there is nothing to serve.
        self.assertEqual(metadata.service("proxy-test", "web-test")["containers"][0]["state"], "stopped")
        delays["scale 0"] = yield change(
            "zero", lambda: metadata.scale("proxy-test", "web-test", 0),
            lambda last: all(code == 503 for _, code, _ in last))
        delays["removed"] = yield change(
            "removed", lambda: metadata.removeService("proxy-test", "web-test"),
            lambda last: all(code == 404 for _, code, _ in last))
        delays["back"] = yield change(
            "back", lambda: (metadata.addService("proxy-test", "web-test", labels={
                "traefik.port": str(backendPort), "traefik.domain": "local"}),
                metadata.scale("proxy-test", "web-test", 1, ips=["127.0.0.3"])),
            lambda last: {(c, b) for _, c, b in last} == {(200, "127.0.0.3")})
        yield stopLoop()
        failed = [s for s in seen if s[0] not in ("one", "zero", "removed", "back") and s[1] != 200]
        self.assertEqual(failed, [], delays)
        # While scaling to 1 (whose container is stopped), to 0 and removing,
        # answers are 200 until relayd sees the change, then 503 or 404.
        for phase, allowed in (("one", {200, 503}), ("zero", {503}), ("removed", {503, 404}), ("back", {404, 200})):
            self.assertEqual({c for p, c, _ in seen if p == phase} - allowed, set(), phase)
        for name, delay in delays.items():
            self.assertLess(delay, 3.0, f"{name}: relayd followed after {delay:.2f}s ({delays})")
