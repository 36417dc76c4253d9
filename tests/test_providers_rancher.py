"""
Tests for the Rancher 1.x metadata provider and for the fake metadata service
it is tested against.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.fakes.rancher_metadata import RancherMetadata, listen


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
