"""
End-to-end tests: the real C{twistd relayd} process, real backends and a real
client, all on loopback.
"""

from __future__ import annotations

import json
import os
import time

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.helpers import Client, RelaydProcess, freePorts, poll, startBackend, tempdir, writeFile

DYNAMIC = """
[http.routers.apps]
rule = "Host(`a.example`)"
service = "a"

[http.routers.api]
rule = "Host(`a.example`) && PathPrefix(`/api`)"
service = "b"

[http.services.a.loadBalancer]
[[http.services.a.loadBalancer.servers]]
url = "http://127.0.0.1:{a}"

[http.services.b.loadBalancer]
[[http.services.b.loadBalancer.servers]]
url = "http://127.0.0.1:{b}"
"""


class RelaydEndToEndTests(TestCase):
    timeout = 60

    def setUp(self) -> defer.Deferred[None]:
        self.dir = tempdir(self)
        self.portA, self.echoA = startBackend("A")
        self.portB, self.echoB = startBackend("B")
        self.addCleanup(self.portA.stopListening)
        self.addCleanup(self.portB.stopListening)
        self.client = Client()
        self.addCleanup(self.client.close)
        (self.web,) = freePorts(1)
        self.dynamic = os.path.join(self.dir, "dynamic.toml")
        writeFile(
            self.dynamic,
            DYNAMIC.format(a=self.portA.getHost().port, b=self.portB.getHost().port),
        )
        writeFile(
            os.path.join(self.dir, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{self.web}"

[providers]
providersThrottleDuration = "200ms"

[providers.file]
filename = "dynamic.toml"
pollInterval = "100ms"

[log]
level = "INFO"
""",
        )
        self.relayd = RelaydProcess(["--config", "relayd.toml"], cwd=self.dir)
        self.addCleanup(self.relayd.stop)
        return self.relayd.waitForLog(f"listening on 127.0.0.1:{self.web}")

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.web}{path}"

    @defer.inlineCallbacks
    def backendFor(self, path: str, host: str = "a.example"):
        response, body = yield self.client.get(self.url(path), host=host)
        if response.code != 200:
            return response.code
        return json.loads(body)["backend"]

    @defer.inlineCallbacks
    def test_routesByHostAndPath(self):
        """
        Requests are routed by Host and path, the longer rule winning, and
        unmatched requests get Go's 404 text.
        """
        self.assertEqual((yield self.backendFor("/")), "A")
        self.assertEqual((yield self.backendFor("/api/users")), "B")
        response, body = yield self.client.get(self.url("/"), host="other.example")
        self.assertEqual((response.code, body), (404, b"404 page not found\n"))
        self.assertEqual(self.echoB.requests[-1]["uri"], "/api/users")
        headers = self.echoB.requests[-1]["headers"]
        self.assertEqual(headers["host"], ["a.example"])
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])

    @defer.inlineCallbacks
    def test_editServedWithinPollAndThrottle(self):
        """
        An edit of the dynamic file is served within the poll interval plus the
        throttle (here 0.1 s + 0.2 s; allowed 3 s with process scheduling).
        """
        self.assertEqual((yield self.backendFor("/api/x")), "B")
        text = DYNAMIC.format(a=self.portA.getHost().port, b=self.portB.getHost().port)
        writeFile(self.dynamic, text.replace("PathPrefix(`/api`)", "PathPrefix(`/v2`)"))
        started = time.monotonic()
        yield poll(lambda: self.backendFor("/v2/x").addCallback(lambda b: b == "B"), timeout=10)
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual((yield self.backendFor("/api/x")), "A")

    @defer.inlineCallbacks
    def test_brokenFileKeepsServing(self):
        """
        A dynamic file that no longer parses leaves the last good routes serving
        and logs the error with the file name; fixing it applies the fix.
        """
        writeFile(self.dynamic, "[http.routers.api\nrule = ")
        yield self.relayd.waitForLog("invalid TOML")
        self.assertIn(self.dynamic, self.relayd.output())
        self.assertEqual((yield self.backendFor("/api/x")), "B")
        writeFile(
            self.dynamic,
            DYNAMIC.format(a=self.portA.getHost().port, b=self.portB.getHost().port)
            + '\n[http.routers.bad]\nrule = "Host(`x`"\nservice = "a"\n',
        )
        yield self.relayd.waitForLog("router bad@file is disabled")
        self.assertEqual((yield self.backendFor("/api/x")), "B")
        self.assertEqual((yield self.backendFor("/")), "A")

    @defer.inlineCallbacks
    def test_unknownKeyKeepsServing(self):
        """
        A dynamic file with an unknown key is rejected with the key path and
        the nearest valid key, and the last good routes keep serving.
        """
        writeFile(
            self.dynamic,
            DYNAMIC.format(a=self.portA.getHost().port, b=self.portB.getHost().port).replace(
                'service = "b"', 'servce = "b"'
            ),
        )
        out = yield self.relayd.waitForLog("http.routers.api.servce")
        self.assertIn('did you mean "service"', out)
        self.assertEqual((yield self.backendFor("/api/x")), "B")

    @defer.inlineCallbacks
    def test_deadBackendIs502(self):
        """
        A backend that refuses connections gives the client a 502 with no
        traceback, and relayd logs the router, service and upstream.
        """
        (dead,) = freePorts(1)
        writeFile(
            self.dynamic,
            DYNAMIC.format(a=dead, b=self.portB.getHost().port),
        )
        yield poll(lambda: self.backendFor("/").addCallback(lambda code: code == 502), timeout=10)
        response, body = yield self.client.get(self.url("/"), host="a.example")
        self.assertEqual(body, b"Bad Gateway\n")
        out = yield self.relayd.waitForLog("upstream=http://127.0.0.1:")
        self.assertIn("router=apps@file", out)


class EmbeddedDefaultTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_startsOnEmbeddedDefault(self):
        """
        With no configuration file, flag or variable, relayd listens on
        127.0.0.1:8080 (logged), answers /ping and serves the welcome page.
        """
        directory = tempdir(self)
        relayd = RelaydProcess([], cwd=directory)
        self.addCleanup(relayd.stop)
        out = yield relayd.waitForLog("listening on 127.0.0.1:8080")
        self.assertIn("embedded default", out)
        client = Client()
        self.addCleanup(client.close)
        response, body = yield client.get("http://127.0.0.1:8080/ping")
        self.assertEqual((response.code, body), (200, b"OK"))
        response, body = yield client.get("http://127.0.0.1:8080/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"relayd", body)
        self.assertIn(b"ping@internal", body)
        self.assertEqual(relayd.stop(), 0)

    @defer.inlineCallbacks
    def test_flagsConfigureWithoutFile(self):
        """
        Static configuration given as flags (a bare --ping enables a section)
        is used when there is no configuration file.
        """
        directory = tempdir(self)
        (port,) = freePorts(1)
        relayd = RelaydProcess(
            [f"--entrypoints.web.address=127.0.0.1:{port}", "--ping", "--ping.entrypoint=web"],
            cwd=directory,
        )
        self.addCleanup(relayd.stop)
        yield relayd.waitForLog(f"listening on 127.0.0.1:{port}")
        client = Client()
        self.addCleanup(client.close)
        response, body = yield client.get(f"http://127.0.0.1:{port}/ping")
        self.assertEqual((response.code, body), (200, b"OK"))

    @defer.inlineCallbacks
    def test_environmentConfigures(self):
        """
        RELAYD_ environment variables configure relayd when there is neither a
        file nor flags.
        """
        directory = tempdir(self)
        (port,) = freePorts(1)
        relayd = RelaydProcess(
            [],
            cwd=directory,
            env={
                "RELAYD_ENTRYPOINTS_WEB_ADDRESS": f"127.0.0.1:{port}",
                "TRAEFIK_PING_ENTRYPOINT": "web",
            },
        )
        self.addCleanup(relayd.stop)
        yield relayd.waitForLog(f"listening on 127.0.0.1:{port}")
        client = Client()
        self.addCleanup(client.close)
        response, body = yield client.get(f"http://127.0.0.1:{port}/ping")
        self.assertEqual(response.code, 200)

    def test_badStaticConfigExits(self):
        """
        A static configuration error stops start-up with the key path and the
        nearest valid key, and a non-zero exit status.
        """
        directory = tempdir(self)
        with open(os.path.join(directory, "relayd.toml"), "w") as f:
            f.write('[entryPoints.web]\nadress = ":8000"\n')
        relayd = RelaydProcess([], cwd=directory)
        status = relayd.process.wait(30)
        out = relayd.output()
        relayd.stop()
        self.assertNotEqual(status, 0)
        self.assertIn('entryPoints.web.adress: unknown key, did you mean "address"?', out)
        self.assertNotIn("Traceback", out)
