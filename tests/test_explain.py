"""
Tests for explaining a routing decision: the matched router with its
middlewares, service and server (peeked without disturbing the balancer, with
health and sticky cookies honoured), the reasons the routers evaluated before
it did not match, input errors, and the text rendering.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.runtime.build import Runtime, build
from relayd.runtime.explain import explainRequest, formatExplanation
from relayd.services.sticky import cookieName, serverHash
from tests.helpers import Client, RelaydProcess, freePorts, memoryRequest, poll, startBackend, tempdir, writeFile

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
C = "http://127.0.0.1:9003"


def runtimeOf(http: dict[str, Any], static: dict[str, Any] | None = None) -> Runtime:
    """
    A runtime built offline from an http section, on entrypoint web.
    """
    config, _ = decode(StaticConfig, static or {"entryPoints": {"web": {"address": "127.0.0.1:8000"}}})
    return build(effective(config), decodeDynamic({"http": http}), 1, reactor=Clock())


def lb(*urls: str, **extra: Any) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"url": u} for u in urls], **extra}}


ROUTERS = {
    "admin": {"rule": "Host(`admin.example`) && PathPrefix(`/api`)", "service": "app", "priority": 90, "middlewares": ["auth", "strip"]},
    "posts": {"rule": "Method(`POST`)", "service": "app", "priority": 80},
    "path": {"rule": "Path(`/exact`)", "service": "app", "priority": 70},
    "header": {"rule": "Header(`X-Env`, `staging`) || Query(`env`, `staging`)", "service": "app", "priority": 60},
    "secure": {"rule": "PathPrefix(`/`)", "service": "app", "priority": 50, "tls": {}},
    "notlocal": {"rule": "!ClientIP(`127.0.0.0/8`)", "service": "app", "priority": 40},
    "all": {"rule": "PathPrefix(`/`)", "service": "app", "priority": 1},
}
MIDDLEWARES = {
    "auth": {"basicAuth": {"users": ["u:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]}},
    "strip": {"stripPrefix": {"prefixes": ["/api"]}},
}


class ExplainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = runtimeOf({"routers": ROUTERS, "middlewares": MIDDLEWARES, "services": {"app": lb(A, B)}})

    def explain(self, method: str = "GET", url: str = "http://x.example/", headers: list[tuple[str, str]] | None = None, **kw: Any) -> dict[str, Any]:
        return explainRequest(self.runtime, "web", method, url, headers or [], **kw)

    def test_match(self) -> None:
        """
        The matched router comes with its rule, priority, middlewares, service and the server it would pick.
        """
        result = self.explain(url="http://admin.example/api/users?x=1")
        self.assertEqual(
            result["match"],
            {
                "router": "admin",
                "rule": ROUTERS["admin"]["rule"],
                "priority": 90,
                "tls": False,
                "middlewares": ["auth", "strip"],
                "service": "app",
                "server": A,
                "serverReason": "next in weighted round robin",
            },
        )
        self.assertEqual(
            result["request"],
            {"method": "GET", "host": "admin.example", "path": "/api/users", "query": "x=1", "tls": False, "headers": []},
        )
        self.assertEqual(result["skipped"], [])
        self.assertEqual(result["entryPoint"], "web")

    def test_skippedReasons(self) -> None:
        """
        Every router ahead of the match is listed in evaluation order with the part of its rule that failed.
        """
        result = self.explain(url="http://x.example/other", clientIP="10.0.0.1")
        reasons = [(s["router"], s["priority"], s["reason"]) for s in result["skipped"]]
        self.assertEqual(
            reasons,
            [
                ("admin", 90, 'Host(`admin.example`) does not match host "x.example"'),
                ("posts", 80, 'Method(`POST`) does not match method "GET"'),
                ("path", 70, 'Path(`/exact`) does not match path "/other"'),
                (
                    "header",
                    60,
                    "Header(`X-Env`, `staging`) does not match header X-Env (absent); "
                    "and Query(`env`, `staging`) does not match an empty query",
                ),
                ("secure", 50, "TLS only"),
            ],
        )
        self.assertEqual(result["match"]["router"], "notlocal")

    def test_conjunctionFirstFailure(self) -> None:
        """
        For a conjunction the reason is the first part that fails.
        """
        result = self.explain(url="http://admin.example/web")
        self.assertEqual(result["skipped"][0]["reason"], 'PathPrefix(`/api`) does not match path "/web"')

    def test_headerValue(self) -> None:
        """
        A header with another value is shown with the values the request has; a matching header matches.
        """
        result = self.explain(url="http://x.example/q", headers=[("x-env", "prod")])
        self.assertIn('header X-Env: "prod"', result["skipped"][3]["reason"])
        result = self.explain(url="http://x.example/q", headers=[("x-env", "staging")])
        self.assertEqual(result["match"]["router"], "header")

    def test_negatedReason(self) -> None:
        """
        A negated matcher that fails says what it excludes.
        """
        result = self.explain(url="http://x.example/q")
        self.assertEqual(
            result["skipped"][-1]["reason"],
            '!ClientIP(`127.0.0.0/8`) excludes client IP "127.0.0.1", which ClientIP(`127.0.0.0/8`) matches',
        )
        self.assertEqual(result["match"]["router"], "all")

    def test_tls(self) -> None:
        """
        An https URL is a TLS request: plain routers are skipped as such and TLS routers are evaluated.
        """
        result = self.explain(url="https://x.example/q")
        self.assertEqual(result["match"]["router"], "secure")
        self.assertTrue(result["match"]["tls"])
        self.assertEqual(
            [s["reason"] for s in result["skipped"]],
            ["plain HTTP only (the request is over TLS)"] * 4,
        )

    def test_noMatch(self) -> None:
        """
        With no match, every router is listed with its reason.
        """
        runtime = runtimeOf({"routers": {"a": ROUTERS["admin"]}, "middlewares": MIDDLEWARES, "services": {"app": lb(A)}})
        result = explainRequest(runtime, "web", "GET", "http://x.example/", [])
        self.assertIsNone(result["match"])
        self.assertEqual([s["router"] for s in result["skipped"]], ["a"])

    def test_priorityOrder(self) -> None:
        """
        Routers are evaluated by priority, then by name.
        """
        routers = {
            "b": {"rule": "PathPrefix(`/`)", "service": "app", "priority": 5},
            "a": {"rule": "PathPrefix(`/`)", "service": "app", "priority": 5},
            "c": {"rule": "Host(`nope`)", "service": "app", "priority": 9},
        }
        result = explainRequest(runtimeOf({"routers": routers, "services": {"app": lb(A)}}), "web", "GET", "http://x/", [])
        self.assertEqual([s["router"] for s in result["skipped"]], ["c"])
        self.assertEqual(result["match"]["router"], "a")

    def test_peekDoesNotAdvance(self) -> None:
        """
        Explaining does not move the round robin; the prediction is what the real balancer then picks.
        """
        handler = self.runtime.services["app"].handler
        first = handler.choose(memoryRequest(b"GET", b"/"))
        self.assertEqual(first, A)
        for _ in range(3):
            self.assertEqual(self.explain()["match"]["server"], B)
        self.assertEqual(handler.choose(memoryRequest(b"GET", b"/")), B)

    def test_health(self) -> None:
        """
        A server marked down by its health check is not predicted; with none up there is no server.
        """
        runtime = runtimeOf(
            {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "app"}},
                "services": {"app": lb(A, B, healthCheck={"path": "/health"})},
            }
        )
        status = runtime.services["app"].serverStatus
        status[A] = "DOWN"
        result = explainRequest(runtime, "web", "GET", "http://x/", [])
        self.assertEqual((result["match"]["server"], result["match"]["serverReason"]), (B, "next in weighted round robin"))
        status[B] = "DOWN"
        result = explainRequest(runtime, "web", "GET", "http://x/", [])
        self.assertEqual((result["match"]["server"], result["match"]["serverReason"]), (None, "no healthy server"))

    def test_sticky(self) -> None:
        """
        A sticky cookie naming a healthy server is honoured; naming a down one, the round robin decides.
        """
        runtime = runtimeOf(
            {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "app"}},
                "services": {"app": lb(A, B, C, sticky={"cookie": {"name": "pin"}}, healthCheck={"path": "/h"})},
            }
        )
        cookie = [("Cookie", f"other=1; pin={serverHash(C)}")]
        result = explainRequest(runtime, "web", "GET", "http://x/", cookie)
        self.assertEqual((result["match"]["server"], result["match"]["serverReason"]), (C, "sticky cookie pin"))
        runtime.services["app"].serverStatus[C] = "DOWN"
        result = explainRequest(runtime, "web", "GET", "http://x/", cookie)
        self.assertEqual((result["match"]["server"], result["match"]["serverReason"]), (A, "next in weighted round robin"))
        self.assertEqual(cookieName("pin", "app"), "pin")

    def test_weightedAndFailover(self) -> None:
        """
        Weighted services name the child picked; failover follows the main service's health.
        """
        runtime = runtimeOf(
            {
                "routers": {
                    "w": {"rule": "Host(`w`)", "service": "split"},
                    "f": {"rule": "Host(`f`)", "service": "safe"},
                },
                "services": {
                    "one": lb(A),
                    "two": lb(B, healthCheck={"path": "/h"}),
                    "split": {"weighted": {"services": [{"name": "two", "weight": 1}, {"name": "one", "weight": 1}]}},
                    "safe": {"failover": {"service": "two", "fallback": "one"}},
                },
            }
        )
        match = explainRequest(runtime, "web", "GET", "http://w/", [])["match"]
        self.assertEqual(match["server"], B)
        self.assertEqual(match["serverReason"], "weighted child two (next in weighted round robin): next in weighted round robin")
        match = explainRequest(runtime, "web", "GET", "http://f/", [])["match"]
        self.assertEqual((match["server"], match["serverReason"]), (B, "failover main two: next in weighted round robin"))
        runtime.services["two"].serverStatus[B] = "DOWN"
        match = explainRequest(runtime, "web", "GET", "http://f/", [])["match"]
        self.assertEqual(match["server"], A)
        self.assertTrue(match["serverReason"].startswith("failover fallback one"), match["serverReason"])

    def test_internalService(self) -> None:
        """
        A router to an internal service has no server, and says why.
        """
        config, _ = decode(StaticConfig, {"entryPoints": {"web": {"address": "127.0.0.1:8000"}}, "ping": {"entryPoint": "web"}})
        from relayd.providers.internal import internalConfig

        dynamic = internalConfig(effective(config))
        from relayd.config.merge import mergeProviders

        merged, _ = mergeProviders([("internal", dynamic)])
        runtime = build(effective(config), merged, 1, reactor=Clock(), internal={"ping@internal": lambda context: object()})
        match = explainRequest(runtime, "web", "GET", "http://x/ping", [])["match"]
        self.assertEqual(
            (match["router"], match["service"], match["server"], match["serverReason"]),
            ("ping@internal", "ping@internal", None, "internal service ping@internal"),
        )

    def test_entryPointMiddlewares(self) -> None:
        """
        The entrypoint's middlewares come first in the chain.
        """
        static = {"entryPoints": {"web": {"address": "127.0.0.1:8000", "http": {"middlewares": ["strip"]}}}}
        runtime = runtimeOf(
            {"routers": {"r": {"rule": "PathPrefix(`/`)", "service": "app", "middlewares": ["auth"]}}, "middlewares": MIDDLEWARES, "services": {"app": lb(A)}},
            static,
        )
        self.assertEqual(explainRequest(runtime, "web", "GET", "http://x/", [])["match"]["middlewares"], ["strip", "auth"])

    def test_badInput(self) -> None:
        """
        An unknown entrypoint, a bad method, URL or header raise ValueError with a clear message.
        """
        cases = [
            (("nope", "GET", "http://x/", []), 'unknown entrypoint "nope" (defined: web)'),
            (("web", "", "http://x/", []), "invalid method ''"),
            (("web", "GET", "x.example/", []), "invalid URL 'x.example/': expected http://host/path or https://host/path"),
            (("web", "GET", "http://x/a b", []), "invalid URL 'http://x/a b': whitespace in the URL"),
            (("web", "GET", "http://x/", [("Bad Name", "1")]), "invalid header name 'Bad Name'"),
            (("web", "GET", "http://x/", [("X", "a\nb")]), "invalid value for header X"),
        ]
        for args, message in cases:
            with self.assertRaises(ValueError) as raised:
                explainRequest(self.runtime, *args)
            self.assertEqual(str(raised.exception), message)

    def test_format(self) -> None:
        """
        The text rendering lists skipped routers with reasons, then the match.
        """
        text = formatExplanation(self.explain(method="POST", url="http://admin.example/web?q=1"))
        self.assertEqual(
            text,
            "POST http://admin.example/web?q=1 on entrypoint web\n"
            "  skipped admin (priority 90): Host(`admin.example`) && PathPrefix(`/api`)\n"
            '    PathPrefix(`/api`) does not match path "/web"\n'
            "matched posts (priority 80): Method(`POST`)\n"
            "  middlewares: (none)\n"
            "  service: app\n"
            f"  server: {A} (next in weighted round robin)\n",
        )


class APITests(TestCase):
    """
    GET /api/explain on a real relayd (api.insecure on a loopback traefik entrypoint).
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_explainEndpoint(self) -> Any:
        """
        The API explains with the live runtime: the shadow warning is in the router status, the
        server with a failing health check is not predicted, and bad input is a 400 with a message.
        """
        directory = tempdir(self)
        sick, sickEcho = startBackend("sick")
        sickEcho.failPaths.add("/health")
        healthy, _ = startBackend("healthy")
        self.addCleanup(sick.stopListening)
        self.addCleanup(healthy.stopListening)
        client = Client()
        self.addCleanup(client.close)
        web, traefik = freePorts(2)
        sickURL = f"http://127.0.0.1:{sick.getHost().port}"
        healthyURL = f"http://127.0.0.1:{healthy.getHost().port}"
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f'[entryPoints.web]\naddress = "127.0.0.1:{web}"\n[entryPoints.traefik]\naddress = "127.0.0.1:{traefik}"\n'
            '[api]\ninsecure = true\n[providers.file]\nfilename = "dynamic.yml"\n[log]\nlevel = "INFO"\n',
        )
        writeFile(
            os.path.join(directory, "dynamic.yml"),
            "http:\n  routers:\n"
            "    all:\n      rule: PathPrefix(`/`)\n      priority: 100\n      entryPoints: [web]\n      service: app\n"
            "    late:\n      rule: Host(`late.example`)\n      entryPoints: [web]\n      service: app\n"
            "    api:\n      rule: Host(`a.example`) && PathPrefix(`/api`)\n      priority: 200\n"
            "      entryPoints: [web]\n      service: app\n      middlewares: [strip]\n"
            "  middlewares:\n    strip:\n      stripPrefix:\n        prefixes: [/api]\n"
            "  services:\n    app:\n      loadBalancer:\n        servers:\n"
            f"          - url: {sickURL}\n          - url: {healthyURL}\n"
            "        healthCheck:\n          path: /health\n          interval: 200ms\n          timeout: 2s\n",
        )
        relayd = RelaydProcess(["--config", "relayd.toml"], cwd=directory)
        self.addCleanup(relayd.stop)
        yield relayd.waitForLog(f"listening on 127.0.0.1:{traefik}")
        api = f"http://127.0.0.1:{traefik}/api"

        @defer.inlineCallbacks
        def getJSON(path: str) -> Any:
            response, body = yield client.get(api + path)
            return response.code, json.loads(body)

        @defer.inlineCallbacks
        def sickIsDown() -> Any:
            code, body = yield getJSON("/http/services/app%40file")
            return code == 200 and body["serverStatus"].get(sickURL) == "DOWN"

        yield poll(sickIsDown, timeout=20)
        code, body = yield getJSON("/http/routers/late%40file")
        self.assertEqual((code, body["status"]), (200, "warning"))
        self.assertEqual(
            body["error"],
            ['never matches: router "all@file" (priority 100) matches every request it would, and is evaluated first'],
        )
        url = quote("http://b.example/x?y=1", safe="")
        code, body = yield getJSON(f"/explain?entrypoint=web&method=GET&url={url}&header=X-A:1")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["request"]["headers"], [["X-A", "1"]])
        self.assertEqual(
            body["skipped"],
            [
                {
                    "router": "api@file",
                    "rule": "Host(`a.example`) && PathPrefix(`/api`)",
                    "priority": 200,
                    "reason": 'Host(`a.example`) does not match host "b.example"',
                }
            ],
        )
        match = body["match"]
        self.assertEqual(
            (match["router"], match["service"], match["middlewares"], match["server"]),
            ("all@file", "app@file", [], healthyURL),
        )
        code, body = yield getJSON("/explain?entrypoint=nope&url=http%3A%2F%2Fa%2F")
        self.assertEqual(code, 400)
        self.assertEqual(body, {"message": 'unknown entrypoint "nope" (defined: traefik, web)'})
