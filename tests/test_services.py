"""
Tests for load balancing: smooth weighted round robin, and sticky cookies
(Traefik's cookie names and values, rewriting, survival across reloads).
"""

from __future__ import annotations

import hashlib

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relayd.config.dynamic import CookieConfig, decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.services.loadbalancer import SmoothWeightedRoundRobin
from relayd.services.sticky import cookieName, fnv64, serverHash, setCookieHeader
from relayd.watcher import Watcher
from tests.helpers import Client, startBackend


class SmoothWeightedRoundRobinTests(SynchronousTestCase):
    def test_smoothSpread(self) -> None:
        """
        Weights 5:1:1 give nginx's smooth sequence a a b a c a a.
        """
        wrr = SmoothWeightedRoundRobin([("a", 5), ("b", 1), ("c", 1)])
        self.assertEqual("".join(wrr.pick() for _ in range(7)), "aabacaa")

    def test_proportions(self) -> None:
        """
        Over many picks each member gets its weight's share, and weight 0 none.
        """
        wrr = SmoothWeightedRoundRobin([("a", 3), ("b", 1), ("z", 0)])
        picks = [wrr.pick() for _ in range(400)]
        self.assertEqual((picks.count("a"), picks.count("b"), picks.count("z")), (300, 100, 0))

    def test_skipsRefusedMembers(self) -> None:
        """
        Members turned away are skipped without losing the others' smooth
        order, and with none accepted there is no pick.
        """
        wrr = SmoothWeightedRoundRobin([("a", 5), ("b", 1), ("c", 1)])
        self.assertEqual("".join(wrr.pick(lambda m: m != "a") for _ in range(4)), "bcbc")
        self.assertIsNone(wrr.pick(lambda m: False))

    def test_empty(self) -> None:
        """
        A balancer with no positive weight is empty.
        """
        self.assertEqual(len(SmoothWeightedRoundRobin([("a", 0)])), 0)


class CookieTests(SynchronousTestCase):
    def test_generatedName(self) -> None:
        """
        Without a configured name the cookie is '_' and five hex digits of the
        SHA-1 of '_TRAEFIK_BACKEND_' + the service name.
        """
        digest = hashlib.sha1(b"_TRAEFIK_BACKEND_app@file").hexdigest()
        self.assertEqual(cookieName("", "app@file"), "_" + digest[:5])
        self.assertEqual(len(cookieName("", "x")), 6)

    def test_sanitizedName(self) -> None:
        """
        A configured name keeps token characters and replaces others with '_'.
        """
        self.assertEqual(cookieName("my cookie;v=1", "s"), "my_cookie_v_1")
        self.assertEqual(cookieName("a-b.c~d", "s"), "a-b.c~d")

    def test_values(self) -> None:
        """
        The value is the first 16 hex digits of SHA-256 of the server URL; the
        legacy FNV-1 64 hash is Go's fnv.New64.
        """
        self.assertEqual(serverHash("http://a"), hashlib.sha256(b"http://a").hexdigest()[:16])
        self.assertEqual(fnv64(""), "cbf29ce484222325")
        self.assertEqual(fnv64("a"), "af63bd4c8601b7be")

    def test_setCookie(self) -> None:
        """
        Set-Cookie is written in Go's attribute order, Max-Age only when not 0
        (negative expires now), SameSite only when set.
        """
        self.assertEqual(setCookieHeader("n", "v", CookieConfig()), b"n=v; Path=/")
        config = CookieConfig(secure=True, httpOnly=True, sameSite="lax", maxAge=60, path="/app", domain=".a.example")
        self.assertEqual(
            setCookieHeader("n", "v", config), b"n=v; Path=/app; Domain=a.example; Max-Age=60; HttpOnly; Secure; SameSite=Lax"
        )
        self.assertEqual(setCookieHeader("n", "v", CookieConfig(maxAge=-1)), b"n=v; Path=/; Max-Age=0")
        # Traefik lower-cases the mode; anything else writes no attribute.
        self.assertEqual(setCookieHeader("n", "v", CookieConfig(sameSite="STRICT")), b"n=v; Path=/; SameSite=Strict")
        self.assertEqual(setCookieHeader("n", "v", CookieConfig(sameSite="io")), b"n=v; Path=/")


class StickyEndToEndTests(TestCase):
    @defer.inlineCallbacks
    def test_stickyAcrossReloads(self):
        """
        A sticky cookie pins its server across requests and across reloads that
        keep the server; when the server is removed the next pick gets a
        rewritten cookie; an old-format cookie is honoured and rewritten.
        """
        backends = [startBackend(name) for name in "ABC"]
        for listening, _ in backends:
            self.addCleanup(listening.stopListening)
        urls = [f"http://127.0.0.1:{listening.getHost().port}" for listening, _ in backends]

        def config(servers: list[str], extraRouter: bool = False) -> object:
            routers = {"r": {"rule": "PathPrefix(`/`)", "service": "s"}}
            if extraRouter:
                routers["other"] = {"rule": "Path(`/other`)", "service": "s"}
            return decodeDynamic(
                {
                    "http": {
                        "routers": routers,
                        "services": {
                            "s": {
                                "loadBalancer": {
                                    "servers": [{"url": u} for u in servers],
                                    "sticky": {"cookie": {"name": "pin", "httpOnly": True}},
                                }
                            }
                        },
                    }
                }
            )

        static, _ = decode(StaticConfig, {"entryPoints": {"web": {"address": "127.0.0.1:0"}}})
        static = effective(static)
        watcher = Watcher(reactor, static, reactor=reactor)
        self.addCleanup(watcher.stop)
        watcher.throttle = 0
        watcher.update(ProviderUpdate("file", config(urls)))
        ep = EntryPointService("web", static.entryPoints["web"], reactor, watcher.runtime)
        watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        client = Client()
        self.addCleanup(client.close)
        url = f"http://127.0.0.1:{ep.port}/"

        response, _ = yield client.get(url, host="x")
        (setCookie,) = response.headers.getRawHeaders(b"set-cookie")
        first = response.headers.getRawHeaders(b"x-backend")[0]
        cookie = setCookie.split(b";")[0].decode()
        self.assertTrue(setCookie.endswith(b"; Path=/; HttpOnly"), setCookie)
        for _ in range(5):
            response, _ = yield client.get(url, host="x", headers={"cookie": f"other=1; {cookie}"})
            self.assertEqual(response.headers.getRawHeaders(b"x-backend")[0], first)
            self.assertIsNone(response.headers.getRawHeaders(b"set-cookie"))

        watcher.update(ProviderUpdate("file", config(urls, extraRouter=True)))
        response, _ = yield client.get(url, host="x", headers={"cookie": cookie})
        self.assertEqual(response.headers.getRawHeaders(b"x-backend")[0], first)

        pinned = urls["ABC".index(first.decode())]
        watcher.update(ProviderUpdate("file", config([u for u in urls if u != pinned])))
        response, _ = yield client.get(url, host="x", headers={"cookie": cookie})
        self.assertNotEqual(response.headers.getRawHeaders(b"x-backend")[0], first)
        self.assertIsNotNone(response.headers.getRawHeaders(b"set-cookie"))

        remaining = [u for u in urls if u != pinned][0]
        response, _ = yield client.get(url, host="x", headers={"cookie": f"pin={fnv64(remaining)}"})
        self.assertEqual(response.headers.getRawHeaders(b"x-backend")[0], b"ABC"[urls.index(remaining):][:1])
        self.assertEqual(
            response.headers.getRawHeaders(b"set-cookie")[0].split(b";")[0], f"pin={serverHash(remaining)}".encode()
        )
