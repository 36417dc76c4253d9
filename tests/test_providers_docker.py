"""
Tests for the Docker provider: the translation of inspected containers into
configuration (enable, constraints, health, networks and ports, v1 and v2
labels, merging replicas) on inspect answers shaped like dockerd's; and against
a real private dockerd (L{tests.docker_fixture}), the provider following
containers as they start, stop and turn healthy, and a real relayd process
routing to busybox httpd containers labelled as in the seeds.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from relayd.config.dynamic import Server
from relayd.config.gotemplate import compileTemplate
from relayd.config.static import ClientTLS
from relayd.config.static import DockerProvider as DockerProviderConfig
from relayd.interfaces import IProvider
from relayd.providers.base import ProviderUpdate
from relayd.providers.containers import ConstraintError, compileConstraints
from relayd.providers.docker import DockerProvider, Settings, buildConfiguration, parseContainer
from tests.docker_fixture import dockerEngine, removeAll
from tests.helpers import Client, RelaydProcess, freePorts, poll, tempdir, writeFile

# The labels of seed 000 (a docker-compose service behind Traefik), verbatim.
SEED_000 = [
    "traefik.http.routers.socket-router.rule=PathPrefix(`/wsk`)",
    "traefik.http.services.service01.loadbalancer.server.port=5000",
    "traefik.http.services.service01.loadbalancer.sticky.cookie=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.name=io",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.httponly=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.secure=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.samesite=io",
    "traefik.http.middlewares.socket-replaceprefix.replacepath.path=/",
    "traefik.http.routers.socket-router.middlewares=socket-replaceprefix@docker",
]
# The Traefik 1.x labels of seed 003, verbatim.
SEED_003 = [
    "traefik.port=80",
    "traefik.backend=hello",
    "traefik.frontend.rule=Host:hello.docker",
]


def labels(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines)


def inspected(
    name: str,
    labels: dict[str, str] | None = None,
    mode: str = "host",
    status: str = "running",
    health: str | None = None,
    networks: dict[str, str] | None = None,
    ports: dict[str, list[tuple[str, str]] | None] | None = None,
) -> dict[str, Any]:
    """
    An inspect answer shaped like dockerd 20.10's (C{GET /containers/<id>/json}).
    """
    state: dict[str, Any] = {"Status": status, "Running": status == "running"}
    if health is not None:
        state["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
    nets = {"host": ""} if mode == "host" else (networks or {"bridge": "172.17.0.2"})
    return {
        "Id": f"{name}-id" * 4,
        "Name": "/" + name,
        "State": state,
        "HostConfig": {"NetworkMode": mode},
        "Config": {"Labels": labels or {}, "ExposedPorts": {p: {} for p in (ports or {})} or None},
        "NetworkSettings": {
            "Ports": {
                p: [{"HostIp": ip, "HostPort": hp} for ip, hp in b] if b else None for p, b in (ports or {}).items()
            },
            "Networks": {n: {"IPAddress": a, "GlobalIPv6Address": "", "NetworkID": "x"} for n, a in nets.items()},
        },
    }


def build(*answers: dict[str, Any], **options: Any):
    settings = Settings(**{"defaultRule": compileTemplate("Host(`{{ normalize .Name }}`)"), **options})
    return buildConfiguration([parseContainer(a) for a in answers], settings)


class TranslationTests(SynchronousTestCase):
    """
    Inspected containers to configuration, as Traefik's Docker provider does.
    """

    def test_defaults(self) -> None:
        """
        A container without labels gets a service and a router named after it,
        with the default rule and its lowest exposed port on its network.
        """
        config, errors = build(
            inspected("web", mode="bridge", ports={"8080/tcp": None, "443/tcp": None, "9000/tcp": None})
        )
        self.assertEqual(errors, [])
        self.assertEqual(config.http.routers["web"].rule, "Host(`web`)")
        self.assertEqual(config.http.routers["web"].service, "web")
        self.assertEqual(config.http.services["web"].loadBalancer.servers, (Server(url="http://172.17.0.2:443"),))

    def test_hostNetwork(self) -> None:
        """
        A container in host network mode is reached on the host's address and
        the port label.
        """
        config, errors = build(
            inspected("api", {"traefik.http.services.api.loadbalancer.server.port": "8081"}),
            hostAddress="127.0.0.1",
        )
        self.assertEqual(errors, [])
        self.assertEqual(config.http.services["api"].loadBalancer.servers, (Server(url="http://127.0.0.1:8081"),))

    def test_networkLabel(self) -> None:
        """
        C{traefik.docker.network} picks the address among the container's
        networks; the provider's C{network} is the default.
        """
        nets = {"front": "10.1.0.5", "back": "10.2.0.5"}
        answer = inspected("a", {"traefik.docker.network": "back"}, mode="front", networks=nets, ports={"80/tcp": None})
        config, _ = build(answer, network="front")
        self.assertEqual(config.http.services["a"].loadBalancer.servers, (Server(url="http://10.2.0.5:80"),))
        config, _ = build(inspected("a", mode="front", networks=nets, ports={"80/tcp": None}), network="back")
        self.assertEqual(config.http.services["a"].loadBalancer.servers, (Server(url="http://10.2.0.5:80"),))

    def test_useBindPortIP(self) -> None:
        """
        With C{useBindPortIP} the host binding is used when its IP is specific.
        """
        answer = inspected("b", mode="bridge", ports={"80/tcp": [("127.0.0.1", "18080")]})
        config, _ = build(answer, useBindPortIP=True)
        self.assertEqual(config.http.services["b"].loadBalancer.servers, (Server(url="http://127.0.0.1:18080"),))
        answer = inspected("b", mode="bridge", ports={"80/tcp": [("0.0.0.0", "18080")]})
        config, _ = build(answer, useBindPortIP=True)
        self.assertEqual(config.http.services["b"].loadBalancer.servers, (Server(url="http://172.17.0.2:80"),))

    def test_enable(self) -> None:
        """
        C{exposedByDefault} false needs C{traefik.enable=true}; false always hides.
        """
        on, off, plain = (
            inspected("on", {"traefik.enable": "true"}, ports={"80/tcp": None}),
            inspected("off", {"traefik.enable": "false"}, ports={"80/tcp": None}),
            inspected("plain", ports={"80/tcp": None}),
        )
        config, _ = build(on, off, plain, exposedByDefault=False)
        self.assertEqual(sorted(config.http.routers), ["on"])
        config, _ = build(on, off, plain)
        self.assertEqual(sorted(config.http.routers), ["on", "plain"])

    def test_constraints(self) -> None:
        """
        Only containers whose labels match the constraints are kept.
        """
        a = inspected("a", {"team": "blue", "tier": "web-1"}, ports={"80/tcp": None})
        b = inspected("b", {"team": "red"}, ports={"80/tcp": None})
        constraint = compileConstraints("Label(`team`, `blue`) && LabelRegex(`tier`, `^web-[0-9]+$`) || Label(`x`,`y`)")
        config, _ = build(a, b, constraints=constraint)
        self.assertEqual(sorted(config.http.routers), ["a"])
        config, _ = build(a, b, constraints=compileConstraints("!(Label(`team`, `blue`))"))
        self.assertEqual(sorted(config.http.routers), ["b"])

    def test_badConstraints(self) -> None:
        """
        A constraints expression that does not parse is refused with the reason.
        """
        for text in ("Label(`a`)", "Tag(`a`, `b`)", "Label(`a`, `b`) &&", "LabelRegex(`a`, `(`)"):
            self.assertRaises(ConstraintError, compileConstraints, text)

    def test_health(self) -> None:
        """
        A container with a health check counts only when healthy; with
        C{allowEmptyServices} it keeps an empty service; stopped containers
        are skipped.
        """
        starting = inspected("s", health="starting", ports={"80/tcp": None})
        healthy = inspected("h", health="healthy", ports={"80/tcp": None})
        stopped = inspected("x", status="exited", ports={"80/tcp": None})
        config, _ = build(starting, healthy, stopped)
        self.assertEqual(sorted(config.http.routers), ["h"])
        config, _ = build(starting, allowEmptyServices=True)
        self.assertEqual(config.http.services["s"].loadBalancer.servers, ())
        self.assertEqual(config.http.routers["s"].rule, "Host(`s`)")

    def test_compose(self) -> None:
        """
        Compose replicas share C{<service>_<project>} as name: one service
        with both servers, one router.
        """
        compose = {"com.docker.compose.project": "wsk", "com.docker.compose.service": "socket-server"}
        one = inspected("wsk_socket-server_1", compose, mode="n", networks={"n": "10.0.0.2"}, ports={"5000/tcp": None})
        two = inspected("wsk_socket-server_2", compose, mode="n", networks={"n": "10.0.0.3"}, ports={"5000/tcp": None})
        config, errors = build(one, two)
        self.assertEqual(errors, [])
        self.assertEqual(config.http.routers["socket-server-wsk"].rule, "Host(`socket-server-wsk`)")
        self.assertEqual(
            config.http.services["socket-server-wsk"].loadBalancer.servers,
            (Server(url="http://10.0.0.2:5000"), Server(url="http://10.0.0.3:5000")),
        )

    def test_conflict(self) -> None:
        """
        A router two containers define differently is dropped with an error.
        """
        a = inspected("a", {"traefik.http.routers.r.rule": "Host(`a`)"}, ports={"80/tcp": None})
        b = inspected("b", {"traefik.http.routers.r.rule": "Host(`b`)"}, ports={"80/tcp": None})
        config, errors = build(a, b)
        self.assertNotIn("r", config.http.routers)
        self.assertEqual([e.path for e in errors], ["http.routers.r"])

    def test_badLabels(self) -> None:
        """
        A container whose labels do not decode contributes nothing; others do.
        """
        bad = inspected("bad", {"traefik.http.routers.r.priority": "high"}, ports={"80/tcp": None})
        good = inspected("good", ports={"80/tcp": None})
        config, errors = build(bad, good)
        self.assertEqual(sorted(config.http.routers), ["good"])
        self.assertEqual(len(errors), 1)
        self.assertIn("container bad", str(errors[0]))

    def test_seed000(self) -> None:
        """
        Seed 000's labels: the PathPrefix router with the replacePath
        middleware, the sticky cookie options, the server on port 5000.
        """
        config, errors = build(inspected("socket-server", labels(SEED_000)))
        self.assertEqual(errors, [])
        router = config.http.routers["socket-router"]
        self.assertEqual(router.rule, "PathPrefix(`/wsk`)")
        self.assertEqual(router.service, "service01")
        self.assertEqual(router.middlewares, ("socket-replaceprefix@docker",))
        self.assertEqual(config.http.middlewares["socket-replaceprefix"].replacePath.path, "/")
        lb = config.http.services["service01"].loadBalancer
        self.assertEqual(lb.servers, (Server(url="http://127.0.0.1:5000"),))
        cookie = lb.sticky.cookie
        self.assertEqual((cookie.name, cookie.httpOnly, cookie.secure, cookie.sameSite), ("io", True, True, "io"))

    def test_seed003(self) -> None:
        """
        Seed 003's Traefik 1.x labels: a router for Host hello.docker to the
        backend hello on port 80.
        """
        config, errors = build(inspected("webapp", labels(SEED_003)))
        self.assertEqual(errors, [])
        self.assertEqual(config.http.routers["hello"].rule, "Host(`hello.docker`)")
        self.assertEqual(config.http.services["hello"].loadBalancer.servers, (Server(url="http://127.0.0.1:80"),))


def engine() -> Any:
    found = dockerEngine()
    return found


class ProviderTests(TestCase):
    """
    The provider against a real dockerd.
    """

    timeout = 60

    def setUp(self) -> None:
        self.engine = engine()
        self.addCleanup(removeAll, self.engine)
        self.updates: list[ProviderUpdate] = []

    def provider(self, **options: Any) -> DockerProvider:
        config = DockerProviderConfig(**{"endpoint": self.engine.endpoint, **options})
        provider = DockerProvider(reactor, self.updates.append, config)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def routers(self) -> set[str]:
        return set(self.updates[-1].config.http.routers) if self.updates else set()

    def test_interface(self) -> None:
        """
        The provider is an L{IProvider} named C{docker}.
        """
        provider = DockerProvider(reactor, self.updates.append, DockerProviderConfig(endpoint=self.engine.endpoint))
        self.assertTrue(verifyObject(IProvider, provider))
        self.assertEqual(provider.providerName, "docker")

    @defer.inlineCallbacks
    def test_followsContainers(self) -> None:
        """
        A started container appears, a stopped one goes, a removed and
        restarted engine stream still follows.
        """
        a, b = freePorts(2)
        self.provider()
        yield poll(lambda: self.updates)
        self.assertEqual(self.routers(), set())
        first = self.engine.run("first", {"traefik.http.services.first.loadbalancer.server.port": str(a)}, a)
        yield poll(lambda: self.routers() == {"first"})
        servers = self.updates[-1].config.http.services["first"].loadBalancer.servers
        self.assertEqual(servers, (Server(url=f"http://127.0.0.1:{a}"),))
        self.engine.run("second", {"traefik.http.services.second.loadbalancer.server.port": str(b)}, b)
        yield poll(lambda: self.routers() == {"first", "second"})
        first.stop()
        yield poll(lambda: self.routers() == {"second"})

    @defer.inlineCallbacks
    def test_badLabelsReported(self) -> None:
        """
        A container with bad labels is left out and its problem, naming the
        container and the label, is in the update's errors; the others serve.
        """
        a, b = freePorts(2)
        self.provider()
        self.engine.run("good", {"traefik.http.services.good.loadbalancer.server.port": str(a)}, a)
        self.engine.run("bad", {"traefik.http.routers.bad.priority": "high"}, b)
        yield poll(lambda: self.updates and self.updates[-1].errors and "good" in self.routers())
        messages = " ".join(str(e) for e in self.updates[-1].errors)
        self.assertIn("bad", messages)
        self.assertIn("traefik.http.routers.bad.priority", messages)
        self.assertNotIn("bad", self.routers())

    @defer.inlineCallbacks
    def test_watchFalse(self) -> None:
        """
        With C{watch = false} the containers are read once.
        """
        (a,) = freePorts(1)
        self.engine.run("once", {"traefik.http.services.once.loadbalancer.server.port": str(a)}, a)
        provider = self.provider(watch=False)
        yield poll(lambda: self.routers() == {"once"})
        self.engine.run("later", {"traefik.http.services.later.loadbalancer.server.port": str(a + 1)}, a + 1)
        yield defer.Deferred.fromCoroutine(_sleep(0.5))
        self.assertEqual(self.routers(), {"once"})
        self.assertFalse(provider._poller.running)

    @defer.inlineCallbacks
    def test_unreachable(self) -> None:
        """
        An engine that does not answer is reported in the update's errors.
        """
        config = DockerProviderConfig(endpoint="unix://" + os.path.join(tempdir(self), "none.sock"))
        provider = DockerProvider(reactor, self.updates.append, config)
        provider.startService()
        self.addCleanup(provider.stopService)
        yield poll(lambda: self.updates and self.updates[-1].errors)
        self.assertIn("cannot reach the Docker engine", str(self.updates[-1].errors[0]))

    @defer.inlineCallbacks
    def test_tcpTLS(self) -> None:
        """
        Over C{tcp://} with C{tls} (a CA, a client certificate and its key)
        the provider follows the engine's containers.
        """
        (a,) = freePorts(1)
        tls = ClientTLS(ca=self.engine.tlsCA, cert=self.engine.tlsCert, key=self.engine.tlsKey)
        self.provider(endpoint=self.engine.tcpEndpoint, tls=tls)
        yield poll(lambda: self.updates)
        self.assertEqual(self.routers(), set())
        self.engine.run("overtls", {"traefik.http.services.overtls.loadbalancer.server.port": str(a)}, a)
        yield poll(lambda: self.routers() == {"overtls"})
        self.assertEqual(self.updates[-1].errors, ())
        servers = self.updates[-1].config.http.services["overtls"].loadBalancer.servers
        self.assertEqual(servers, (Server(url=f"http://127.0.0.1:{a}"),))

    @defer.inlineCallbacks
    def assertRefused(self, tls: ClientTLS, reason: str) -> None:
        """
        With C{tls} the provider cannot reach the TLS endpoint: its update
        has an error (saying C{reason}) and no routes, though a labelled
        container runs.
        """
        (a,) = freePorts(1)
        self.engine.run("hidden", {"traefik.http.services.hidden.loadbalancer.server.port": str(a)}, a)
        self.provider(endpoint=self.engine.tcpEndpoint, tls=tls)
        yield poll(lambda: self.updates and self.updates[-1].errors)
        message = str(self.updates[-1].errors[0])
        self.assertIn("cannot reach the Docker engine", message)
        self.assertIn(reason, message)
        self.assertEqual(self.routers(), set())

    def test_tcpTLSWrongCA(self) -> None:
        """
        A CA that did not sign the engine's certificate: the engine is not
        trusted, an error is reported and there are no routes.
        """
        return self.assertRefused(
            ClientTLS(ca=self.engine.tlsOtherCA, cert=self.engine.tlsCert, key=self.engine.tlsKey),
            "certificate verify failed",
        )

    def test_tcpTLSNoClientCertificate(self) -> None:
        """
        Without a client certificate the engine (C{--tlsverify}) refuses the
        connection: an error is reported and there are no routes.
        """
        # The engine's TLS alert (bad certificate, or certificate required).
        return self.assertRefused(ClientTLS(ca=self.engine.tlsCA), "alert")


async def _sleep(seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds, lambda: None)


def _portFree(port: int) -> bool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


class EndToEndTests(TestCase):
    """
    A real relayd process with the Docker provider routing to busybox httpd
    containers on a real dockerd.
    """

    timeout = 90

    def setUp(self) -> None:
        self.engine = engine()
        self.addCleanup(removeAll, self.engine)
        self.client = Client()
        self.addCleanup(self.client.close)

    def relayd(self, extra: str = "") -> tuple[RelaydProcess, str]:
        directory = tempdir(self)
        (web,) = freePorts(1)
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{web}"

[providers]
providersThrottleDuration = "10ms"

[providers.docker]
endpoint = "{self.engine.endpoint}"
{extra}
""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        return process, f"http://127.0.0.1:{web}"

    def status(self, url: str, host: str | None = None, want: int = 200) -> Any:
        @defer.inlineCallbacks
        def check():
            response, body = yield self.client.get(url, host=host)
            return (response, body) if response.code == want else None

        return poll(check, timeout=20)

    @defer.inlineCallbacks
    def test_routesFollowContainers(self) -> None:
        """
        A labelled container's default-rule route appears when it starts and
        goes when it stops.
        """
        (port,) = freePorts(1)
        process, url = self.relayd()
        container = self.engine.run("shop", {"traefik.http.services.shop.loadbalancer.server.port": str(port)}, port)
        _, body = yield self.status(url + "/", host="shop")
        self.assertEqual(body, b"shop")
        container.stop()
        yield self.status(url + "/", host="shop", want=404)

    @defer.inlineCallbacks
    def test_healthCheck(self) -> None:
        """
        A container with a health check gets traffic only once healthy, and no
        longer when it turns unhealthy.
        """
        (port,) = freePorts(1)
        process, url = self.relayd()
        container = self.engine.run(
            "checked", {"traefik.http.services.checked.loadbalancer.server.port": str(port)}, port, healthy=False
        )
        container.waitForHealth("unhealthy")
        # relayd is up (it answers), and the unhealthy container stays out.
        yield self.status(url + "/", host="checked", want=404)
        yield defer.Deferred.fromCoroutine(_sleep(0.5))
        response, _ = yield self.client.get(url + "/", host="checked")
        self.assertEqual(response.code, 404)
        container.setHealthy(True)
        _, body = yield self.status(url + "/", host="checked")
        self.assertEqual(body, b"checked")
        container.setHealthy(False)
        yield self.status(url + "/", host="checked", want=404)

    @defer.inlineCallbacks
    def test_seed000(self) -> None:
        """
        Seed 000's labels, verbatim: /wsk/... reaches the container on port
        5000 with the path replaced by /, and the sticky cookie io is set
        HttpOnly and Secure.
        """
        if not _portFree(5000):
            raise SkipTest("the seed's port 5000 is in use on loopback")
        process, url = self.relayd()
        self.engine.run("socket-server", labels(SEED_000), 5000, content="wsk backend")
        response, body = yield self.status(url + "/wsk/socket.io/?EIO=4")
        self.assertEqual(body, b"wsk backend")
        (cookie,) = response.headers.getRawHeaders(b"set-cookie")
        self.assertTrue(cookie.startswith(b"io="), cookie)
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"Secure", cookie)
        response, _ = yield self.client.get(url + "/other")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_seed003(self) -> None:
        """
        Seed 003's Traefik 1.x labels, verbatim: Host hello.docker reaches the
        container on port 80.
        """
        if not _portFree(80):
            raise SkipTest("the seed's port 80 is in use on loopback")
        process, url = self.relayd()
        self.engine.run("webapp", labels(SEED_003), 80, content="hello from webapp")
        _, body = yield self.status(url + "/", host="hello.docker")
        self.assertEqual(body, b"hello from webapp")
        response, _ = yield self.client.get(url + "/", host="other.docker")
        self.assertEqual(response.code, 404)


class DocsTests(SynchronousTestCase):
    """
    The configurations in docs/providers/docker.rst check clean.
    """

    def test_examples(self) -> None:
        """
        The reference block and the walkthrough's relayd.toml load with no
        error and no warning.
        """
        import io

        from relayd.cli import main
        from tests.helpers import ROOT
        from tests.test_examples import _literalBlock

        with open(os.path.join(ROOT, "docs", "providers", "docker.rst"), encoding="utf-8") as f:
            text = f.read()
        directory = tempdir(self)
        for marker in ("The static configuration", "relayd runs beside it"):
            path = os.path.join(directory, "relayd.toml")
            writeFile(path, _literalBlock(text, marker))
            out = io.StringIO()
            self.assertEqual(main(["check", "--config", path], out), 0, out.getvalue())
            self.assertNotIn("warning", out.getvalue().lower())
