"""
Active health checks: each server of a load balancer with C{healthCheck} is
probed every C{interval} (C{unhealthyInterval} while down); a server answering
2xx/3xx (or exactly C{status} when set) within C{timeout} is UP, anything else
DOWN. Servers start UP, as in Traefik. Checkers outlive generations: a reload
that keeps a service's servers and health check keeps its checker and so its
servers' state.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikeRedirectAgent, HTTPConnectionPool, readBody
from twisted.web.error import RedirectWithNoLocation
from twisted.web.http_headers import Headers

from relayd.config.dynamic import HealthCheck
from relayd.providers.base import Poller

UP = "UP"
DOWN = "DOWN"


def probeURL(serverURL: str, check: HealthCheck) -> str:
    """
    The URL probed for a server: its URL with the check's scheme, port and path.
    """
    parts = urlsplit(serverURL)
    scheme = check.scheme or parts.scheme
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = check.port or parts.port
    netloc = f"{host}:{port}" if port else host
    path, _, query = check.path.partition("?")
    return urlunsplit((scheme, netloc, path, query, ""))


class HealthChecker:
    """
    Probes the servers of one service and keeps their status.

    @ivar status: server URL to C{"UP"} or C{"DOWN"}, updated in place (the
        runtime status shows this very dict).
    """

    _log = Logger()

    def __init__(self, reactor: Any, serviceName: str, servers: Iterable[str], check: HealthCheck) -> None:
        self.reactor = reactor
        self.serviceName = serviceName
        self.check = check
        self.status: dict[str, str] = {url: UP for url in servers}
        self.listeners: list[Callable[[str, bool], None]] = []
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        agent: Any = Agent(reactor, pool=self.pool, connectTimeout=float(check.timeout) or None)
        self.agent = BrowserLikeRedirectAgent(agent) if check.followRedirects else agent
        self.pollers = {
            url: Poller(reactor, lambda url=url: self.probe(url), float(check.interval), name=f"health check of {url}")
            for url in self.status
        }

    def start(self) -> None:
        for poller in self.pollers.values():
            poller.start(now=True)

    def stop(self) -> defer.Deferred[Any]:
        for poller in self.pollers.values():
            poller.stop()
        return self.pool.closeCachedConnections()

    def isUp(self, url: str) -> bool:
        return self.status.get(url) == UP

    def probe(self, url: str) -> defer.Deferred[None]:
        """
        Probe one server now and record the result (never fails).
        """
        check = self.check
        headers = Headers()
        for name, value in check.headers.items():
            headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        if check.hostname:
            headers.setRawHeaders(b"host", [check.hostname.encode("idna")])
        d = self.agent.request(check.method.upper().encode(), probeURL(url, check).encode(), headers)
        if check.timeout:
            timer = self.reactor.callLater(float(check.timeout), d.cancel)
            d.addBoth(_cancelTimer, timer)
        d.addCallbacks(self._answered, self._redirectWithoutLocation)
        d.addCallbacks(lambda healthy: self._set(url, healthy, ""), lambda f: self._set(url, False, f.getErrorMessage()))
        return d

    def _healthy(self, code: int) -> bool:
        expected = self.check.status
        return code == expected if expected else 200 <= code < 400

    def _answered(self, response: Any) -> defer.Deferred[bool]:
        healthy = self._healthy(response.code)
        return readBody(response).addBoth(lambda _: healthy)

    def _redirectWithoutLocation(self, failure: Any) -> Any:
        # Go's client returns a redirect without Location as the answer;
        # Twisted's redirect agent fails with it wrapped in ResponseFailed.
        for reason in getattr(failure.value, "reasons", [failure]):
            if reason.check(RedirectWithNoLocation):
                return self._healthy(int(reason.value.status))
        return failure

    def _set(self, url: str, healthy: bool, reason: str) -> None:
        poller = self.pollers.get(url)
        if poller is not None:
            interval = self.check.interval if healthy else (self.check.unhealthyInterval or self.check.interval)
            poller.interval = float(interval)
        new = UP if healthy else DOWN
        if self.status.get(url) == new:
            return
        self.status[url] = new
        self._log.warn(
            "health check: server {upstream} of service {service} is {status}{reason}",
            upstream=url,
            service=self.serviceName,
            status=new,
            reason=f" ({reason})" if reason else "",
        )
        for listener in self.listeners:
            listener(url, healthy)


def _cancelTimer(result: Any, timer: Any) -> Any:
    if timer.active():
        timer.cancel()
    return result


class HealthRegistry:
    """
    The checkers of every generation, keyed by service name, servers and check
    configuration; L{retain} stops those a new generation no longer uses.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.checkers: dict[tuple[Any, ...], HealthChecker] = {}

    def get(self, serviceName: str, servers: tuple[str, ...], check: HealthCheck) -> HealthChecker:
        key = (serviceName, servers, check)
        checker = self.checkers.get(key)
        if checker is None:
            checker = self.checkers[key] = HealthChecker(self.reactor, serviceName, servers, check)
            checker.start()
        return checker

    def retain(self, used: set[tuple[Any, ...]]) -> None:
        for key in list(self.checkers):
            if key not in used:
                self.checkers.pop(key).stop()

    def stop(self) -> defer.Deferred[Any]:
        stopped = [checker.stop() for checker in self.checkers.values()]
        self.checkers.clear()
        return defer.gatherResults(stopped)
