"""
Tests for the REST API (C{api@internal}): Traefik's JSON shapes, lists with
filters, sorting and pages, errors, the dashboard hand-over, and a real
C{twistd relayd} serving it on the C{traefik} entrypoint and behind a
basicAuth router.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import types
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from relayd.api.internal import internalServices
from relayd.api.rest import APIHandler, apiService, paginate, APIError
from relayd.api.shapes import encode, goJSON, rfc3339
from relayd.config.dynamic import HealthCheck, LoadBalancer, Router, RouterTLS, Server, decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import RequestContext
from relayd.interfaces import IHTTPHandler
from relayd.providers.base import ProviderUpdate
from relayd.providers.internal import internalConfig
from relayd.runtime.build import BuildContext, BuildError
from relayd.watcher import Watcher
from tests.helpers import (
    ROOT,
    Client,
    RelaydProcess,
    freePorts,
    memoryRequest,
    poll,
    startBackend,
    tempdir,
    writeFile,
)
from tests.test_examples import _literalBlock

DYNAMIC: dict[str, Any] = {
    "http": {
        "routers": {
            "web": {
                "rule": "Host(`a.example`) && PathPrefix(`/app`)",
                "service": "app",
                "middlewares": ["strip"],
                "entryPoints": ["web"],
                "tls": {},
            },
            "other": {"rule": "Host(`b.example`)", "service": "spare", "priority": 7, "entryPoints": ["web"]},
            "broken": {"rule": "Host(`c.example`", "service": "app", "entryPoints": ["web"]},
        },
        "services": {
            "app": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}, {"url": "http://127.0.0.1:2"}]}},
            "spare": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:3"}], "passHostHeader": False}},
            "split": {"weighted": {"services": [{"name": "app", "weight": 2}, {"name": "spare", "weight": 0}]}},
        },
        "middlewares": {"strip": {"stripPrefix": {"prefixes": ["/app"]}}},
    },
    "tcp": {
        "routers": {"db": {"rule": "HostSNI(`*`)", "service": "db", "entryPoints": ["tcp"]}},
        "services": {"db": {"loadBalancer": {"servers": [{"address": "127.0.0.1:5432"}]}}},
        "middlewares": {"few": {"inFlightConn": {"amount": 3}}},
    },
    "udp": {
        "routers": {"dns": {"service": "dns", "entryPoints": ["dns"]}},
        "services": {"dns": {"loadBalancer": {"servers": [{"address": "127.0.0.1:53"}]}}},
    },
}


def staticConfig(api: dict[str, Any] | None = None, **more: Any) -> StaticConfig:
    raw: dict[str, Any] = {
        "entryPoints": {
            "web": {"address": "127.0.0.1:0"},
            "tcp": {"address": "127.0.0.1:0"},
            "dns": {"address": "127.0.0.1:0/udp"},
        },
        "providers": {"file": {"filename": "dynamic.toml"}},
    }
    if api is not None:
        raw["api"] = api
    raw.update(more)
    config, warnings = decode(StaticConfig, raw)
    return effective(config)


def patchModule(testCase: Any, name: str, module: Any) -> None:
    """
    Put C{module} in C{sys.modules} under C{name} for one test (None makes
    importing it fail).
    """
    missing = object()
    original = sys.modules.get(name, missing)
    sys.modules[name] = module

    def restore() -> None:
        if original is missing:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = original  # type: ignore[assignment]

    testCase.addCleanup(restore)


class API:
    """
    A runtime built by a watcher from the file provider's L{DYNAMIC} and the
    internal routers, and a way to ask its API.
    """

    def __init__(self, static: StaticConfig, dynamic: dict[str, Any] = DYNAMIC, state: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.static = static
        self.state = state if state is not None else {"startDate": 1_700_000_000.5, "terminating": False}
        self.watcher = Watcher(self.clock, static, internal=internalServices(self.state))
        self.watcher.update(ProviderUpdate("internal", internalConfig(static)))
        self.watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        self.runtime = self.watcher.runtime
        self.handler = apiService(BuildContext(reactor=self.clock, static=static, previous=None, internal={}), self.state)

    def request(self, target: str, method: bytes = b"GET", headers: tuple[tuple[bytes, bytes], ...] = ()) -> Any:
        path, _, query = target.partition("?")
        request = memoryRequest(method, target.encode(), ((b"host", b"localhost"),) + headers)
        request.relayd = RequestContext(
            entryPoint="traefik",
            runtime=self.runtime,
            clientIP="127.0.0.1",
            localPort=8080,
            forwardPath=path,
            rawQuery=query,
            trustForwarded=False,
        )
        self.handler.handle(request)
        return request

    def get(
        self, target: str, method: bytes = b"GET", headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> tuple[int, dict[str, str], Any]:
        """
        The status, headers (lower-case names) and decoded JSON body (raw
        bytes when not JSON, None when empty).
        """
        data = self.request(target, method, headers).testTransport.written.getvalue()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.lower()] = value.strip()
        decoded: Any = None
        if body:
            decoded = json.loads(body) if fields.get("content-type") == "application/json" else body
        return int(lines[0].split(" ")[1]), fields, decoded


class GoJSONTests(SynchronousTestCase):
    def test_omitEmpty(self) -> None:
        """
        Zero values are left out, optional values only when unset, booleans
        that default to true (Go pointers) are kept, sections are kept and
        durations are written as Go writes them.
        """
        lb = LoadBalancer(
            servers=(Server(url="http://x", weight=0),),
            passHostHeader=False,
            healthCheck=HealthCheck(path="/health"),
        )
        self.assertEqual(
            goJSON(lb),
            {
                "servers": [{"url": "http://x", "weight": 0}],
                "strategy": "wrr",
                "healthCheck": {
                    "mode": "http",
                    "path": "/health",
                    "method": "GET",
                    "interval": "30s",
                    "timeout": "5s",
                    "followRedirects": True,
                },
                "passHostHeader": False,
                "responseForwarding": {"flushInterval": "100ms"},
            },
        )
        self.assertEqual(goJSON(Router(rule="Path(`/`)", tls=RouterTLS())), {"rule": "Path(`/`)", "tls": {}})

    def test_encodeLikeGo(self) -> None:
        """
        The JSON is compact with one trailing newline and escapes <, > and &
        as Go's encoder does.
        """
        self.assertEqual(
            encode({"rule": "A && B<C>", "n": "\u00e9"}),
            '{"rule":"A \\u0026\\u0026 B\\u003cC\\u003e","n":"\u00e9"}\n'.encode(),
        )
        self.assertEqual(json.loads(encode({"rule": "A && B"})), {"rule": "A && B"})

    def test_rfc3339(self) -> None:
        """
        Times are RFC 3339 in UTC, with the fraction only when there is one.
        """
        self.assertEqual(rfc3339(0), "1970-01-01T00:00:00Z")
        self.assertEqual(rfc3339(1_700_000_000.5), "2023-11-14T22:13:20.5Z")

    def test_paginate(self) -> None:
        """
        Pages are cut as Traefik cuts them, with the next page or 1 at the
        end, and bad numbers are a 400 with Traefik's message.
        """
        self.assertEqual(paginate({}, 0), (0, 0, 1))
        self.assertEqual(paginate({"per_page": "2"}, 5), (0, 2, 2))
        self.assertEqual(paginate({"per_page": "2", "page": "3"}, 5), (4, 5, 1))
        for query, message in [
            ({"page": "4", "per_page": "2"}, "invalid request: page: 4, per_page: 2"),
            ({"per_page": "0"}, "invalid request: per_page: 0"),
            ({"page": "x"}, "invalid request: page: 0"),
            ({"page": "-2"}, "invalid request: page: -2"),
        ]:
            error = self.assertRaises(APIError, paginate, query, 5)
            self.assertEqual((error.code, error.message), (400, message))


class ShapeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.api = API(staticConfig({"insecure": True}))

    def test_handlerInterface(self) -> None:
        """
        The API handler provides IHTTPHandler.
        """
        self.assertTrue(verifyObject(IHTTPHandler, self.api.handler))
        self.assertIsInstance(self.api.handler, APIHandler)

    def test_router(self) -> None:
        """
        A router shows its configuration (effective priority, TLS options
        "default"), status, entrypoints used, name, provider and priorityStr.
        """
        code, headers, body = self.api.get("/api/http/routers/web@file")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["x-relayd-generation"], str(self.api.runtime.generation))
        self.assertEqual(
            body,
            {
                "entryPoints": ["web"],
                "middlewares": ["strip@file"],
                "service": "app@file",
                "rule": "Host(`a.example`) && PathPrefix(`/app`)",
                "priority": 39,
                "tls": {"options": "default"},
                "status": "enabled",
                "using": ["web"],
                "name": "web@file",
                "provider": "file",
                "priorityStr": "39",
            },
        )

    def test_brokenRouter(self) -> None:
        """
        A router that cannot be built is disabled and lists its error.
        """
        code, _, body = self.api.get("/api/http/routers/broken@file")
        self.assertEqual((code, body["status"]), (200, "disabled"))
        self.assertEqual(len(body["error"]), 1)
        self.assertIn("invalid rule", body["error"][0])

    def test_service(self) -> None:
        """
        A service shows its configuration, status, the routers naming it,
        server status, name, provider and type.
        """
        code, _, body = self.api.get("/api/http/services/spare@file")
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {
                "loadBalancer": {
                    "servers": [{"url": "http://127.0.0.1:3"}],
                    "strategy": "wrr",
                    "passHostHeader": False,
                    "responseForwarding": {"flushInterval": "100ms"},
                },
                "status": "enabled",
                "usedBy": ["other@file"],
                "name": "spare@file",
                "provider": "file",
                "type": "loadbalancer",
                "serverStatus": {"http://127.0.0.1:3": "UP"},
            },
        )
        # As in Traefik: the routers naming it, disabled ones included, not
        # the services using it.
        self.assertEqual(self.api.get("/api/http/services/app@file")[2]["usedBy"], ["broken@file", "web@file"])
        code, _, body = self.api.get("/api/http/services/split@file")
        self.assertEqual(body["type"], "weighted")
        self.assertEqual(body["weighted"], {"services": [{"name": "app@file", "weight": 2}, {"name": "spare@file", "weight": 0}]})
        self.assertNotIn("serverStatus", body)
        self.assertNotIn("usedBy", body)

    def test_middleware(self) -> None:
        """
        A middleware shows its configuration, status, users, name, provider
        and lower-case type.
        """
        code, _, body = self.api.get("/api/http/middlewares/strip@file")
        self.assertEqual(
            body,
            {
                "stripPrefix": {"prefixes": ["/app"]},
                "status": "enabled",
                "usedBy": ["web@file"],
                "name": "strip@file",
                "provider": "file",
                "type": "stripprefix",
            },
        )

    def test_tcpAndUDP(self) -> None:
        """
        TCP routers, services and middlewares and UDP routers and services
        have their own endpoints; UDP routers have no priorityStr.
        """
        code, _, body = self.api.get("/api/tcp/routers")
        self.assertEqual([r["name"] for r in body], ["db@file"])
        self.assertEqual(body[0]["priorityStr"], str(body[0]["priority"]))
        code, _, body = self.api.get("/api/tcp/services/db@file")
        self.assertEqual((body["type"], body["serverStatus"]), ("loadbalancer", {"127.0.0.1:5432": "UP"}))
        code, _, body = self.api.get("/api/tcp/middlewares")
        self.assertEqual(body[0]["type"], "inflightconn")
        self.assertEqual(body[0]["inFlightConn"], {"amount": 3})
        code, _, body = self.api.get("/api/udp/routers/dns@file")
        self.assertEqual(
            body,
            {
                "entryPoints": ["dns"],
                "service": "dns@file",
                "status": "enabled",
                "using": ["dns"],
                "name": "dns@file",
                "provider": "file",
            },
        )
        code, _, body = self.api.get("/api/udp/services")
        self.assertEqual(body[0]["loadBalancer"], {"servers": [{"address": "127.0.0.1:53"}]})
        self.assertEqual(body[0]["usedBy"], ["dns@file"])
        code, _, _ = self.api.get("/api/udp/middlewares")
        self.assertEqual(code, 404)

    def test_entryPoints(self) -> None:
        """
        Entrypoints are listed by name with their static configuration, one
        can be asked for by name, and an unknown one is a JSON 404.
        """
        code, headers, body = self.api.get("/api/entrypoints")
        self.assertEqual([e["name"] for e in body], ["dns", "tcp", "traefik", "web"])
        self.assertEqual(headers["x-next-page"], "1")
        code, _, body = self.api.get("/api/entrypoints/traefik")
        self.assertEqual((body["name"], body["address"]), ("traefik", ":8080"))
        self.assertEqual(body["transport"]["respondingTimeouts"], {"readTimeout": "1m0s", "idleTimeout": "3m0s"})
        self.assertEqual(self.api.get("/api/entrypoints/nope"), (404, unittestAny, {"message": "entry point not found: nope"}))

    def test_overview(self) -> None:
        """
        The overview counts objects, warnings and errors per section and
        names the features and providers.
        """
        code, _, body = self.api.get("/api/overview")
        self.assertEqual(body["http"]["routers"], {"total": 5, "warnings": 0, "errors": 1})
        self.assertEqual(body["http"]["services"], {"total": 3, "warnings": 0, "errors": 0})
        self.assertEqual(body["tcp"]["middlewares"], {"total": 1, "warnings": 0, "errors": 0})
        one = {"total": 1, "warnings": 0, "errors": 0}
        self.assertEqual(body["udp"], {"routers": one, "services": one})
        self.assertEqual(body["features"], {"tracing": "", "metrics": "", "accessLog": False})
        self.assertEqual(body["providers"], ["File"])
        api = API(
            staticConfig(
                {},
                accessLog={},
                metrics={"prometheus": {"manualRouting": True}},
                providers={"http": {"endpoint": "http://127.0.0.1:1/"}, "file": {"filename": "x"}},
            )
        )
        code, _, body = api.get("/api/overview")
        self.assertEqual(body["features"], {"tracing": "", "metrics": "Prometheus", "accessLog": True})
        self.assertEqual(body["providers"], ["File", "HTTP"])

    def test_rawData(self) -> None:
        """
        The raw data holds every object by name, services with their server
        status, without the names and types the lists add.
        """
        code, _, body = self.api.get("/api/rawdata")
        self.assertEqual(
            sorted(body),
            ["middlewares", "routers", "services", "tcpMiddlewares", "tcpRouters", "tcpServices", "udpRouters", "udpServices"],
        )
        self.assertEqual(body["services"]["app@file"]["serverStatus"], {"http://127.0.0.1:1": "UP", "http://127.0.0.1:2": "UP"})
        self.assertNotIn("name", body["routers"]["web@file"])
        self.assertEqual(body["routers"]["web@file"]["using"], ["web"])
        self.assertIn("api@internal", body["routers"])

    def test_version(self) -> None:
        """
        The version answer has Traefik's keys and relayd's start date.
        """
        from relayd import __version__

        code, _, body = self.api.get("/api/version")
        self.assertEqual(body, {"Version": __version__, "Codename": "relayd", "startDate": "2023-11-14T22:13:20.5Z"})
        api = API(staticConfig({"disableDashboardAd": True}))
        self.assertTrue(api.get("/api/version")[2]["disableDashboardAd"])


class _Anything:
    def __eq__(self, other: object) -> bool:
        return True


unittestAny: Any = _Anything()


class ListTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.api = API(staticConfig({"insecure": True}))

    def names(self, target: str) -> list[str]:
        code, _, body = self.api.get(target)
        self.assertEqual(code, 200, body)
        return [item["name"] for item in body]

    def test_sortedByName(self) -> None:
        """
        Lists are sorted by name by default, and backwards with
        direction=desc.
        """
        self.assertEqual(
            self.names("/api/http/routers"),
            ["api@internal", "broken@file", "dashboard@internal", "other@file", "web@file"],
        )
        self.assertEqual(self.names("/api/http/services?direction=desc"), ["split@file", "spare@file", "app@file"])

    def test_sortBy(self) -> None:
        """
        sortBy orders by the field asked for, ties by name.
        """
        self.assertEqual(
            self.names("/api/http/routers?sortBy=priority"),
            ["other@file", "broken@file", "web@file", "dashboard@internal", "api@internal"],
        )
        self.assertEqual(self.names("/api/http/routers?sortBy=status")[0], "broken@file")
        self.assertEqual(self.names("/api/http/routers?sortBy=status&direction=desc")[-1], "broken@file")
        self.assertEqual(self.names("/api/http/services?sortBy=servers"), ["split@file", "spare@file", "app@file"])
        self.assertEqual(self.names("/api/http/services?sortBy=type&direction=desc")[0], "split@file")
        self.assertEqual(self.names("/api/http/middlewares?sortBy=provider")[0], "strip@file")

    def test_filters(self) -> None:
        """
        search looks in names and rules (case-insensitive), status keeps one
        status, serviceName and middlewareName keep the routers using them.
        """
        self.assertEqual(self.names("/api/http/routers?search=B.EXAMPLE"), ["other@file"])
        self.assertEqual(self.names("/api/http/routers?search=oth"), ["other@file"])
        self.assertEqual(self.names("/api/http/routers?status=disabled"), ["broken@file"])
        self.assertEqual(self.names("/api/http/routers?serviceName=app@file"), ["broken@file", "web@file"])
        self.assertEqual(self.names("/api/http/routers?middlewareName=strip@file"), ["web@file"])
        self.assertEqual(self.names("/api/http/services?search=sp"), ["spare@file", "split@file"])
        self.assertEqual(self.names("/api/http/services?status=enabled&search=app"), ["app@file"])
        self.assertEqual(self.names("/api/udp/routers?serviceName=dns@file"), ["dns@file"])

    def test_pages(self) -> None:
        """
        per_page and page cut the list; X-Next-Page names the next page, or
        1 on the last; a page past the end is a JSON 400.
        """
        code, headers, body = self.api.get("/api/http/routers?per_page=2")
        self.assertEqual(([r["name"] for r in body], headers["x-next-page"]), (["api@internal", "broken@file"], "2"))
        code, headers, body = self.api.get("/api/http/routers?per_page=2&page=3")
        self.assertEqual(([r["name"] for r in body], headers["x-next-page"]), (["web@file"], "1"))
        code, headers, body = self.api.get("/api/http/routers?per_page=2&page=4")
        self.assertEqual((code, body), (400, {"message": "invalid request: page: 4, per_page: 2"}))
        self.assertEqual(headers["content-type"], "application/json")
        code, _, body = self.api.get("/api/http/middlewares?page=0")
        self.assertEqual((code, body), (400, {"message": "invalid request: page: 0"}))

    def test_names(self) -> None:
        """
        Names are URL-decoded path segments (with @ or / encoded); an unknown
        name is a JSON 404 naming it, a bad escape a JSON 400.
        """
        slashed = {"a/b": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}}
        api = API(staticConfig({}), dynamic={"http": {"services": slashed}})
        code, _, body = api.get("/api/http/services/a%2Fb%40file")
        self.assertEqual((code, body["name"]), (200, "a/b@file"))
        self.assertEqual(self.api.get("/api/http/routers/web%40file")[2]["name"], "web@file")
        self.assertEqual(self.api.get("/api/http/routers/web")[0::2], (404, {"message": "router not found: web"}))
        self.assertEqual(self.api.get("/api/http/services/x@y")[0::2], (404, {"message": "service not found: x@y"}))
        self.assertEqual(self.api.get("/api/http/middlewares/x")[0::2], (404, {"message": "middleware not found: x"}))
        code, _, body = self.api.get("/api/http/routers/a%zz")
        self.assertEqual(code, 400)
        self.assertIn("unable to decode routerID", body["message"])

    def test_methods(self) -> None:
        """
        HEAD answers the headers of GET without a body; other methods get a
        JSON 405; unknown paths a 404; every answer has the generation.
        """
        getCode, getHeaders, _ = self.api.get("/api/http/routers")
        code, headers, body = self.api.get("/api/http/routers", method=b"HEAD")
        self.assertEqual((code, body), (200, None))
        self.assertEqual(headers["content-length"], getHeaders["content-length"])
        self.assertEqual(headers["x-next-page"], "1")
        code, headers, body = self.api.get("/api/http/routers", method=b"DELETE")
        self.assertEqual((code, body, headers["allow"]), (405, {"message": "method not allowed"}, "GET, HEAD"))
        for path in ("/api/nope", "/api/http/routers/", "/api/http/routers/a/b", "/other", "/debug/vars"):
            code, headers, _ = self.api.get(path)
            self.assertEqual(code, 404, path)
            self.assertEqual(headers["x-relayd-generation"], str(self.api.runtime.generation))


class OptionsTests(SynchronousTestCase):
    def test_basePath(self) -> None:
        """
        With a basePath the API answers under it only.
        """
        api = API(staticConfig({"basePath": "/traefik/"}))
        self.assertEqual(api.get("/traefik/api/version")[0], 200)
        self.assertEqual(api.get("/api/version")[0], 404)
        self.assertEqual(api.get("/traefikapi/version")[0], 404)

    def test_debugVars(self) -> None:
        """
        With api.debug, /debug/vars answers memory and GC figures.
        """
        api = API(staticConfig({"debug": True}))
        code, _, body = api.get("/debug/vars")
        self.assertEqual(code, 200)
        self.assertGreater(body["memstats"]["maxRSS"], 0)
        self.assertEqual(len(body["memstats"]["gcCounts"]), 3)
        self.assertEqual(body["relayd"]["generation"], api.runtime.generation)
        self.assertEqual(api.get("/debug/pprof/")[0], 404)

    def test_noAPISection(self) -> None:
        """
        Without an api section the service does not exist: a router to
        api@internal is disabled with Traefik's error.
        """
        dynamic = {"http": {"routers": {"mine": {"rule": "PathPrefix(`/api`)", "service": "api@internal"}}}}
        api = Watcher(Clock(), staticConfig(), internal=internalServices({}))
        api.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        info = api.runtime.routers["mine@file"]
        self.assertEqual((info.status, info.errors), ("disabled", ["api is not enabled"]))
        self.assertNotIn("api@internal", api.runtime.routers)
        context = BuildContext(reactor=Clock(), static=staticConfig(), previous=None, internal={})
        self.assertRaises(BuildError, apiService, context, {})


class ExplainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.api = API(staticConfig({"insecure": True}))

    def test_explain(self) -> None:
        """
        /api/explain hands the entrypoint, method, URL, headers and client
        address to explainRequest and answers its result.
        """
        calls = []

        def explainRequest(runtime: Any, entryPoint: str, method: str, url: str, headers: Any, clientIP: str) -> Any:
            calls.append((runtime, entryPoint, method, url, headers, clientIP))
            return {"router": "web@file"}

        module = types.ModuleType("relayd.runtime.explain")
        module.explainRequest = explainRequest  # type: ignore[attr-defined]
        patchModule(self, "relayd.runtime.explain", module)
        target = "/api/explain?entrypoint=web&method=POST&url=http%3A%2F%2Fa.example%2Fapp&header=X-A:%201&header=X-B:2:3"
        code, _, body = self.api.get(target)
        self.assertEqual((code, body), (200, {"router": "web@file"}))
        headers = [("X-A", "1"), ("X-B", "2:3")]
        self.assertEqual(calls, [(self.api.runtime, "web", "POST", "http://a.example/app", headers, "127.0.0.1")])

    def test_realExplain(self) -> None:
        """
        With relayd's explainer the answer is JSON about the request; an
        unknown entrypoint is a JSON 400 with its message.
        """
        try:
            importlib.import_module("relayd.runtime.explain")
        except ImportError:
            if os.environ.get("CI") == "true":
                raise
            raise self.skipTest("relayd.runtime.explain is not there yet")
        code, _, body = self.api.get("/api/explain?entrypoint=web&url=http://a.example/app/x")
        self.assertEqual(code, 200, body)
        self.assertIn("web@file", json.dumps(body))
        code, _, body = self.api.get("/api/explain?entrypoint=nope&url=http://a.example/")
        self.assertEqual(code, 400)
        self.assertIn("nope", body["message"])

    def test_badParameters(self) -> None:
        """
        A missing entrypoint or URL, or a header without a colon, is a JSON 400.
        """
        for query in ("url=http://a/", "entrypoint=web", "entrypoint=web&url=http://a/&header=nocolon"):
            code, _, body = self.api.get("/api/explain?" + query)
            self.assertEqual(code, 400, query)
            self.assertIn("message", body)

    def test_unavailable(self) -> None:
        """
        Without the explain module the answer is a JSON 501.
        """
        patchModule(self, "relayd.runtime.explain", None)
        code, _, body = self.api.get("/api/explain?entrypoint=web&url=http://a/")
        self.assertEqual((code, body), (501, {"message": "explain is not available"}))


class DashboardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        seen = self.seen

        class Dashboard:
            def handle(self, request: Any) -> None:
                seen.append((request.relayd.forwardPath, request))
                request.setResponseCode(200)
                request.finish()

        module = types.ModuleType("relayd.api.dashboard")
        module.dashboardService = lambda context, state: Dashboard()  # type: ignore[attr-defined]
        patchModule(self, "relayd.api.dashboard", module)

    def test_handOver(self) -> None:
        """
        Paths under dashboard/ go to the dashboard with the rest of the path.
        """
        api = API(staticConfig({"basePath": "/base"}))
        code, headers, _ = api.get("/base/dashboard/app.js")
        self.assertEqual(code, 200)
        self.assertEqual([path for path, _ in self.seen], ["/app.js"])
        api.get("/base/dashboard/")
        self.assertEqual(self.seen[-1][0], "/")

    def test_redirects(self) -> None:
        """
        dashboard without its slash, and the base path itself, redirect to
        dashboard/.
        """
        api = API(staticConfig({}))
        code, headers, _ = api.get("/dashboard")
        self.assertEqual((code, headers["location"]), (302, "/dashboard/"))
        code, headers, _ = api.get("/", headers=((b"x-forwarded-prefix", b"/edge/"),))
        self.assertEqual((code, headers["location"]), (302, "/edge/dashboard/"))
        api = API(staticConfig({"basePath": "/base/"}))
        self.assertEqual(api.get("/base/dashboard")[1]["location"], "/base/dashboard/")
        self.assertEqual(self.seen, [])

    def test_dashboardOff(self) -> None:
        """
        With api.dashboard false nothing under dashboard answers.
        """
        api = API(staticConfig({"dashboard": False}))
        self.assertEqual(api.get("/dashboard/")[0], 404)
        self.assertEqual(api.get("/dashboard")[0], 404)
        self.assertEqual(self.seen, [])

    def test_absent(self) -> None:
        """
        Without the dashboard module, dashboard paths are a 404.
        """
        patchModule(self, "relayd.api.dashboard", None)
        api = API(staticConfig({}))
        self.assertEqual(api.get("/dashboard/")[0], 404)


DOCS = os.path.join(ROOT, "docs", "api.rst")


def docsExample(marker: str) -> str:
    with open(DOCS, encoding="utf-8") as f:
        return _literalBlock(f.read(), marker)


QUICK_STATIC = "to anyone who can reach the port"
SECURE_STATIC = "static configuration (``relayd.toml``)"
SECURE_DYNAMIC = "password ``secret``"


class DocsTests(SynchronousTestCase):
    def test_examplesCheckClean(self) -> None:
        """
        The configurations in docs/api.rst pass relayd check without warnings,
        and the documented basicAuth entry matches the documented password.
        """
        import io

        from relayd.cli import main
        from relayd.middlewares.auth import md5Crypt

        for static in (QUICK_STATIC, SECURE_STATIC):
            directory = tempdir(self)
            writeFile(os.path.join(directory, "relayd.toml"), docsExample(static))
            writeFile(os.path.join(directory, "dynamic.toml"), docsExample(SECURE_DYNAMIC))
            cwd = os.getcwd()
            os.chdir(directory)
            self.addCleanup(os.chdir, cwd)
            out = io.StringIO()
            status = main(["check", "--config", "relayd.toml"], out)
            os.chdir(cwd)
            self.assertEqual(status, 0, out.getvalue())
            self.assertNotIn("warning", out.getvalue())
        dynamic = decodeDynamic(__import__("tomllib").loads(docsExample(SECURE_DYNAMIC)))
        user, _, hashed = dynamic.http.middlewares["operator-auth"].basicAuth.users[0].partition(":")
        self.assertEqual(md5Crypt(b"secret", b"r3layd00", b"$apr1$"), hashed.encode())


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class ProcessTests(TestCase):
    """
    A real C{twistd relayd} with the API on the traefik entrypoint
    (insecure) and behind the documented basicAuth router.
    """

    timeout = 90

    def setUp(self) -> None:
        self.dir = tempdir(self)
        self.sick, self.sickEcho = startBackend("sick")
        self.sickEcho.failPaths.add("/health")
        self.healthy, _ = startBackend("healthy")
        self.addCleanup(self.sick.stopListening)
        self.addCleanup(self.healthy.stopListening)
        self.client = Client()
        self.addCleanup(self.client.close)

    def start(self, static: str, dynamic: str) -> Any:
        writeFile(os.path.join(self.dir, "relayd.toml"), static)
        writeFile(os.path.join(self.dir, "dynamic.toml"), dynamic)
        relayd = RelaydProcess(["--config", "relayd.toml"], cwd=self.dir)
        self.addCleanup(relayd.stop)
        return relayd

    @defer.inlineCallbacks
    def getJSON(self, url: str, **kwargs: Any) -> Any:
        response, body = yield self.client.get(url, **kwargs)
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        decoded = json.loads(body) if headers.get("content-type") == "application/json" else body
        return response.code, headers, decoded

    @defer.inlineCallbacks
    def test_api(self) -> Any:
        """
        The API answers on the traefik entrypoint with Traefik's shapes: a
        failing health check shows DOWN, a broken router disabled with its
        error, lists page and filter, unknown names are 404; the documented
        router serves it behind basicAuth (401 without credentials).
        """
        web, traefik = freePorts(2)
        static = docsExample(SECURE_STATIC).replace('address = ":80"', f'address = "127.0.0.1:{web}"')
        static = static.replace('filename = "dynamic.toml"', 'filename = "dynamic.toml"\npollInterval = "100ms"')
        static = static.replace("[api]\n", "[api]\ninsecure = true\n")
        static += f'\n[entryPoints.traefik]\naddress = "127.0.0.1:{traefik}"\n\n[log]\nlevel = "INFO"\n'
        dynamic = docsExample(SECURE_DYNAMIC) + f"""
[http.routers.app]
rule = "Host(`a.example`)"
entryPoints = ["web"]
service = "app"

[http.routers.broken]
rule = "Host(`b.example`)"
entryPoints = ["web"]
service = "missing"

[http.services.app.loadBalancer]
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{self.sick.getHost().port}"
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{self.healthy.getHost().port}"
[http.services.app.loadBalancer.healthCheck]
path = "/health"
interval = "200ms"
timeout = "2s"
"""
        relayd = self.start(static, dynamic)
        yield relayd.waitForLog(f"listening on 127.0.0.1:{web}")
        yield relayd.waitForLog(f"listening on 127.0.0.1:{traefik}")
        api = f"http://127.0.0.1:{traefik}"
        sick = f"http://127.0.0.1:{self.sick.getHost().port}"
        healthy = f"http://127.0.0.1:{self.healthy.getHost().port}"

        @defer.inlineCallbacks
        def sickIsDown() -> Any:
            code, _, body = yield self.getJSON(api + "/api/http/services/app%40file")
            return code == 200 and body["serverStatus"].get(sick) == "DOWN"

        yield poll(sickIsDown, timeout=20)
        code, headers, body = yield self.getJSON(api + "/api/http/services/app@file")
        self.assertEqual(body["serverStatus"], {sick: "DOWN", healthy: "UP"})
        self.assertEqual((body["type"], body["status"], body["usedBy"]), ("loadbalancer", "enabled", ["app@file"]))
        self.assertEqual(body["loadBalancer"]["healthCheck"]["interval"], "200ms")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertTrue(headers["x-relayd-generation"].isdigit())

        code, _, body = yield self.getJSON(api + "/api/http/routers/broken%40file")
        self.assertEqual((code, body["status"]), (200, "disabled"))
        self.assertEqual(body["error"], ['the service "missing@file" does not exist'])
        self.assertEqual((body["name"], body["provider"], body["using"]), ("broken@file", "file", ["web"]))

        code, headers, body = yield self.getJSON(api + "/api/http/routers?per_page=2")
        self.assertEqual(([r["name"] for r in body], headers["x-next-page"]), (["api@internal", "app@file"], "2"))
        code, headers, body = yield self.getJSON(api + "/api/http/routers?per_page=2&page=3")
        self.assertEqual(([r["name"] for r in body], headers["x-next-page"]), (["operator@file"], "1"))
        code, _, body = yield self.getJSON(api + "/api/http/routers?per_page=2&page=9")
        self.assertEqual(code, 400)
        code, _, body = yield self.getJSON(api + "/api/http/routers?search=B.EXAMPLE")
        self.assertEqual([r["name"] for r in body], ["broken@file"])
        code, _, body = yield self.getJSON(api + "/api/http/routers?status=enabled&search=file")
        self.assertEqual([r["name"] for r in body], ["app@file", "operator@file"])
        code, _, body = yield self.getJSON(api + "/api/http/routers/nope%40file")
        self.assertEqual((code, body), (404, {"message": "router not found: nope@file"}))
        code, _, body = yield self.getJSON(api + "/api/http/middlewares/operator-auth@file")
        self.assertEqual((body["type"], body["usedBy"]), ("basicauth", ["operator@file"]))

        code, _, body = yield self.getJSON(api + "/api/overview")
        self.assertEqual(body["http"]["routers"], {"total": 5, "warnings": 0, "errors": 1})
        self.assertEqual(body["http"]["services"], {"total": 1, "warnings": 0, "errors": 0})
        self.assertEqual(body["providers"], ["File"])
        code, _, body = yield self.getJSON(api + "/api/entrypoints")
        addresses = [(e["name"], e["address"]) for e in body]
        self.assertEqual(addresses, [("traefik", f"127.0.0.1:{traefik}"), ("web", f"127.0.0.1:{web}")])
        code, _, body = yield self.getJSON(api + "/api/rawdata")
        self.assertIn("app@file", body["services"])
        code, _, body = yield self.getJSON(api + "/api/version")
        self.assertEqual(sorted(body), ["Codename", "Version", "startDate"])

        operator = f"http://127.0.0.1:{web}/api/version"
        code, headers, _ = yield self.getJSON(operator, host="api.local")
        self.assertEqual((code, headers.get("www-authenticate")), (401, 'Basic realm="traefik"'))
        code, _, body = yield self.getJSON(operator, host="api.local", headers=basic("admin", "wrong"))
        self.assertEqual(code, 401)
        code, _, body = yield self.getJSON(operator, host="api.local", headers=basic("admin", "secret"))
        self.assertEqual((code, sorted(body)), (200, ["Codename", "Version", "startDate"]))
        dashboard = f"http://127.0.0.1:{web}/dashboard"
        response, _ = yield self.client.get(dashboard, host="api.local", headers=basic("admin", "secret"))
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")), (302, [b"/dashboard/"]))
        self.assertEqual(relayd.stop(), 0)

    @defer.inlineCallbacks
    def test_noAPISection(self) -> Any:
        """
        Without an api section nothing answers on /api, and a router naming
        api@internal is disabled with "api is not enabled".
        """
        web, traefik = freePorts(2)
        static = f"""
[entryPoints.web]
address = "127.0.0.1:{web}"

[entryPoints.traefik]
address = "127.0.0.1:{traefik}"

[providers.file]
filename = "dynamic.toml"

[log]
level = "INFO"
"""
        relayd = self.start(static, docsExample(SECURE_DYNAMIC))
        yield relayd.waitForLog(f"listening on 127.0.0.1:{web}")
        out = yield relayd.waitForLog(f"listening on 127.0.0.1:{traefik}")
        self.assertIn("api is not enabled", out)
        self.assertIn("operator@file", out)
        for url in (f"http://127.0.0.1:{traefik}/api/version", f"http://127.0.0.1:{web}/api/version"):
            response, _ = yield self.client.get(url, host="api.local", headers=basic("admin", "secret"))
            self.assertEqual(response.code, 404, url)
        self.assertEqual(relayd.stop(), 0)
