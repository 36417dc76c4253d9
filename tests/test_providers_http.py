"""
Tests for the HTTP provider against real Twisted web servers on 127.0.0.1
(plain and TLS with a CA made at test time): configuration loaded and
followed, headers sent, unchanged bodies skipped, failures (bad JSON, 500,
timeouts, refused connections, TLS verification) keeping the last good
configuration with an error; and end to end, a real relayd process routing by
what the endpoint says.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer, reactor, ssl
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server
from zope.interface.verify import verifyObject

from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import HTTPProvider as HTTPProviderConfig
from relayd.config.static import StaticConfig
from relayd.interfaces import IProvider
from relayd.providers.base import ProviderUpdate
from relayd.providers.http import HTTPProvider
from relayd.watcher import Watcher
from tests.helpers import Client, RelaydProcess, freePorts, poll, startBackend, tempdir, writeFile
from tests.test_upstream_tls import PKI, pki


def dynamic(*names: str, url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    """
    A dynamic configuration with a router per name, all to one service.
    """
    return {
        "http": {
            "routers": {n: {"rule": f"Host(`{n}.example`)", "service": "svc"} for n in names},
            "services": {"svc": {"loadBalancer": {"servers": [{"url": url}]}}},
        }
    }


class ConfigResource(resource.Resource):
    """
    The endpoint: answers every GET with C{code} and C{body} (JSON of
    C{document} unless set directly), or never when C{hang}; remembers the
    headers of each request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 200
        self.body = b""
        self.hang = False
        self.requests: list[dict[str, list[str]]] = []
        self.hanging: list[server.Request] = []

    def serve(self, document: Any) -> None:
        self.body = json.dumps(document).encode()

    def render_GET(self, request: server.Request) -> Any:
        self.requests.append(
            {
                k.decode().lower(): [v.decode("latin-1") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            }
        )
        if self.hang:
            self.hanging.append(request)
            return server.NOT_DONE_YET
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"application/json")
        return self.body


def startConfigServer(testCase: TestCase, tls: bool = False) -> tuple[ConfigResource, str]:
    """
    Serve a L{ConfigResource} on 127.0.0.1 (over TLS with the PKI's server
    certificate); returns it and its URL.
    """
    endpoint = ConfigResource()
    site = server.Site(endpoint)
    site.noisy = False
    if tls:
        keys = pki()
        certificate = ssl.PrivateCertificate.loadPEM(keys.serverCertPEM + keys.serverKeyPEM)
        port = reactor.listenSSL(0, site, certificate.options(), interface="127.0.0.1")
    else:
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)

    def finishHanging() -> None:
        for request in endpoint.hanging:
            if not request.finished and not request._disconnected:
                request.finish()

    testCase.addCleanup(finishHanging)
    scheme = "https" if tls else "http"
    return endpoint, f"{scheme}://127.0.0.1:{port.getHost().port}/config"


class HTTPProviderTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        raw = {"entryPoints": {"web": {"address": "127.0.0.1:0"}}, "providers": {"providersThrottleDuration": "0s"}}
        config, _ = decode(StaticConfig, raw)
        self.watcher = Watcher(reactor, effective(config), reactor=reactor)
        self.addCleanup(self.watcher.stop)

    def startProvider(self, endpoint: str, **options: Any) -> HTTPProvider:
        options.setdefault("pollInterval", "100ms")
        config, _ = decode(HTTPProviderConfig, {"endpoint": endpoint, **options})
        provider = HTTPProvider(reactor, self.watcher.update, config)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def update(self) -> ProviderUpdate | None:
        return self.watcher.current.get("http")

    def routers(self) -> list[str]:
        return sorted(name for name in self.watcher.runtime.routers if name.endswith("@http"))

    def errors(self) -> list[str]:
        update = self.update()
        return [str(e) for e in update.errors] if update else []

    def waitForRouters(self, *names: str) -> Any:
        expected = sorted(f"{n}@http" for n in names)
        return poll(lambda: self.routers() == expected and not self.errors())

    def waitForError(self, text: str) -> Any:
        return poll(lambda: any(text in e for e in self.errors()))

    def test_providesInterface(self) -> None:
        """
        The HTTP provider is an L{IProvider} named C{http}.
        """
        config, _ = decode(HTTPProviderConfig, {"endpoint": "http://127.0.0.1:9/"})
        provider = HTTPProvider(reactor, self.watcher.update, config)
        self.assertTrue(verifyObject(IProvider, provider))
        self.assertEqual(provider.providerName, "http")

    async def test_loadsAndFollowsChanges(self) -> None:
        """
        The endpoint's configuration is loaded with names qualified by
        C{@http}, and a change is followed at the next poll.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForRouters("a")
        endpoint.serve(dynamic("a", "b"))
        await self.waitForRouters("a", "b")
        self.assertIn("svc@http", self.watcher.runtime.services)

    async def test_headersSent(self) -> None:
        """
        The configured headers go with every request, Host included.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, headers={"X-Token": "secret", "Host": "config.example"})
        await poll(lambda: len(endpoint.requests) >= 2)
        for headers in endpoint.requests:
            self.assertEqual(headers["x-token"], ["secret"])
            self.assertEqual(headers["host"], ["config.example"])

    async def test_unchangedBodyNotReapplied(self) -> None:
        """
        An answer with the same body as the last one is skipped: the watcher
        builds no new generation.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForRouters("a")
        generation = self.watcher.runtime.generation
        seen = len(endpoint.requests)
        await poll(lambda: len(endpoint.requests) >= seen + 3)
        self.assertEqual(self.watcher.runtime.generation, generation)

    async def test_badJSONKeepsLastGood(self) -> None:
        """
        A body that is not JSON keeps the last good configuration, with the
        error reported; a good body again clears it.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForRouters("a")
        endpoint.body = b'{"http": {"routers": '
        await self.waitForError("not valid JSON")
        self.assertEqual(self.routers(), ["a@http"])
        self.assertIn("127.0.0.1", self.errors()[0])
        endpoint.serve(dynamic("b"))
        await self.waitForRouters("b")

    async def test_invalidConfigurationKeyPath(self) -> None:
        """
        JSON that is not a valid configuration is reported with the key path,
        the last good configuration staying.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForRouters("a")
        endpoint.serve({"http": {"routers": {"a": {"rule": "Host(`a.example`)", "priority": "high"}}}})
        await self.waitForError("http.routers.a.priority")
        self.assertEqual(self.routers(), ["a@http"])

    async def test_yamlBodyAccepted(self) -> None:
        """
        A YAML body is accepted, as Traefik decodes the answer as YAML.
        """
        endpoint, url = startConfigServer(self)
        endpoint.body = (
            b"http:\n  routers:\n    y:\n      rule: Host(`y.example`)\n      service: svc\n"
            b"  services:\n    svc:\n      loadBalancer:\n        servers:\n"
            b"          - url: http://127.0.0.1:9\n"
        )
        self.startProvider(url)
        await self.waitForRouters("y")

    async def test_serverErrorKeepsLastGood(self) -> None:
        """
        A non-200 answer keeps the last good configuration, with the status
        in the error.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForRouters("a")
        endpoint.code = 500
        await self.waitForError("received non-ok response code: 500")
        self.assertEqual(self.routers(), ["a@http"])
        endpoint.code = 200
        await self.waitForRouters("a")

    async def test_timeoutKeepsLastGood(self) -> None:
        """
        An endpoint that does not answer within pollTimeout keeps the last
        good configuration, with the timeout in the error.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, pollTimeout="300ms")
        await self.waitForRouters("a")
        endpoint.hang = True
        await self.waitForError("no answer within 0.3s")
        self.assertEqual(self.routers(), ["a@http"])

    async def test_connectionRefused(self) -> None:
        """
        An endpoint nobody listens on is reported, with nothing loaded and
        without the credentials of its URL.
        """
        (port,) = freePorts()
        self.startProvider(f"http://user:pw@127.0.0.1:{port}/config?token=t")
        await self.waitForError("cannot fetch configuration data")
        self.assertEqual(self.routers(), [])
        self.assertNotIn("pw", " ".join(self.errors()))
        self.assertNotIn("token", " ".join(self.errors()))

    async def test_userInfoBasicAuth(self) -> None:
        """
        User info in the endpoint URL is sent as basic authentication, as Go's
        HTTP client does, and the query string is kept.
        """
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("a"))
        self.startProvider(url.replace("http://", "http://user:pw@") + "?token=t")
        await self.waitForRouters("a")
        self.assertEqual(endpoint.requests[0]["authorization"], ["Basic dXNlcjpwdw=="])

    async def test_tlsVerifiedWithCA(self) -> None:
        """
        An https endpoint whose certificate the configured CA signed is
        loaded, the CA given as a file.
        """
        paths = pki().write(tempdir(self))
        endpoint, url = startConfigServer(self, tls=True)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, tls={"ca": paths["ca"]})
        await self.waitForRouters("a")

    async def test_tlsWrongCARefused(self) -> None:
        """
        An https endpoint whose certificate another CA signed is refused and
        reported.
        """
        other = PKI()
        endpoint, url = startConfigServer(self, tls=True)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, tls={"ca": other.caPEM.decode()})
        await self.waitForError("cannot fetch configuration data")
        self.assertEqual(self.routers(), [])

    async def test_tlsSystemTrustRefusesPrivateCA(self) -> None:
        """
        Without a CA, the system's trust store is used, which does not know
        the test CA.
        """
        endpoint, url = startConfigServer(self, tls=True)
        endpoint.serve(dynamic("a"))
        self.startProvider(url)
        await self.waitForError("cannot fetch configuration data")
        self.assertEqual(self.routers(), [])

    async def test_tlsInsecureSkipVerify(self) -> None:
        """
        insecureSkipVerify accepts the endpoint's certificate whoever signed
        it.
        """
        other = PKI()
        endpoint, url = startConfigServer(self, tls=True)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, tls={"ca": other.caPEM.decode(), "insecureSkipVerify": True})
        await self.waitForRouters("a")

    async def test_tlsUnreadableCA(self) -> None:
        """
        A CA file that cannot be read is reported as the provider's error.
        """
        endpoint, url = startConfigServer(self, tls=True)
        endpoint.serve(dynamic("a"))
        self.startProvider(url, tls={"ca": os.path.join(tempdir(self), "missing.pem")})
        await self.waitForError("tls: cannot read root CA")


class HTTPProviderSetupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.updates: list[ProviderUpdate] = []

    def start(self, **options: Any) -> HTTPProvider:
        config, _ = decode(HTTPProviderConfig, {"endpoint": "http://127.0.0.1:9/", **options})
        provider = HTTPProvider(reactor, self.updates.append, config, agent=object())
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def test_zeroPollIntervalNotPolled(self) -> None:
        """
        A pollInterval of 0 is refused, as Traefik does: the error is reported
        and nothing is fetched.
        """
        self.start(pollInterval="0s")
        self.assertEqual(len(self.updates), 1)
        self.assertEqual(
            [str(e) for e in self.updates[0].errors],
            ["providers.http.pollInterval: poll interval must be greater than 0"],
        )

    def test_badEndpointNotPolled(self) -> None:
        """
        An endpoint that is not an http(s) URL is reported and not polled.
        """
        self.start(endpoint="ftp://127.0.0.1/config")
        self.assertEqual(self.updates[0].errors[0].path, "providers.http.endpoint")

    def test_certWithoutKey(self) -> None:
        """
        A client certificate without its key is reported and not polled.
        """
        self.start(tls={"cert": "client.pem"})
        self.assertEqual(self.updates[0].errors[0].path, "providers.http.tls")


class HTTPProviderProcessTests(TestCase):
    """
    A real relayd process whose routes come from the HTTP provider.
    """

    timeout = 60

    async def test_routesFromEndpoint(self) -> None:
        """
        relayd routes a request to the backend the endpoint's JSON names, and
        follows a change of backend within a poll.
        """
        first, _ = startBackend("first")
        self.addCleanup(first.stopListening)
        second, _ = startBackend("second")
        self.addCleanup(second.stopListening)
        endpoint, url = startConfigServer(self)
        endpoint.serve(dynamic("app", url=f"http://127.0.0.1:{first.getHost().port}"))
        directory = tempdir(self)
        (web,) = freePorts(1)
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"

[providers]
providersThrottleDuration = "10ms"

[providers.http]
endpoint = "{url}"
pollInterval = "100ms"

[providers.http.headers]
X-Relayd-Test = "yes"
""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        client = Client()
        self.addCleanup(client.close)

        async def backend() -> str:
            response, _ = await client.get(f"http://127.0.0.1:{web}/", host="app.example")
            if response.code != 200:
                return ""
            return response.headers.getRawHeaders(b"x-backend", [b""])[0].decode()

        await poll(lambda: _await(backend()).addCallback(lambda name: name == "first"), timeout=20)
        self.assertEqual(endpoint.requests[0]["x-relayd-test"], ["yes"])
        endpoint.serve(dynamic("app", url=f"http://127.0.0.1:{second.getHost().port}"))
        await poll(lambda: _await(backend()).addCallback(lambda name: name == "second"), timeout=10)


def _await(coroutine: Any) -> defer.Deferred[Any]:
    return defer.Deferred.fromCoroutine(coroutine)
