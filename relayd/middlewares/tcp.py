"""
TCP middlewares, and their registry: C{ipAllowList} (C{ipWhiteList}, its
deprecated name) and C{inFlightConn}. A TCP middleware wraps the next TCP
handler: its C{serveTCP(connection)} either passes the connection on or
closes it. They look at the client address only (after the PROXY protocol);
C{ipStrategy} does not exist for TCP, there being no X-Forwarded-For.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger

from relayd.runtime.build import BuildError, ObjectInfo
from relayd.runtime.matchers import IPChecker
from relayd.runtime.rules import RuleError

_log = Logger()


class IPAllowListHandler:
    """
    Closes connections whose client address is outside C{sourceRange}.
    """

    def __init__(self, name: str, checker: IPChecker, next: Any) -> None:
        self.name = name
        self.checker = checker
        self.next = next

    def serveTCP(self, connection: Any) -> None:
        if self.checker.contains(connection.clientIP):
            self.next.serveTCP(connection)
            return
        _log.debug(
            "TCP connection from {client} rejected (middleware={middleware}, router={router})",
            client=connection.clientIP,
            middleware=self.name,
            router=connection.router,
        )
        connection.close()


class InFlightCounter:
    """
    Open connections per client address, shared by the generations of one
    C{inFlightConn} middleware while its configuration is unchanged.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def acquire(self, clientIP: str, amount: int) -> bool:
        count = self.counts.get(clientIP, 0)
        if count >= amount:
            return False
        self.counts[clientIP] = count + 1
        return True

    def release(self, clientIP: str) -> None:
        count = self.counts.get(clientIP, 0) - 1
        if count > 0:
            self.counts[clientIP] = count
        else:
            self.counts.pop(clientIP, None)


class InFlightConnHandler:
    """
    Closes a connection when its client address already has C{amount}
    connections open through this middleware.
    """

    def __init__(self, name: str, amount: int, counter: InFlightCounter, next: Any) -> None:
        self.name = name
        self.amount = amount
        self.counter = counter
        self.next = next

    def serveTCP(self, connection: Any) -> None:
        clientIP = connection.clientIP
        if not self.counter.acquire(clientIP, self.amount):
            _log.debug(
                "TCP connection from {client} rejected: {amount} already open (middleware={middleware})",
                client=clientIP,
                amount=self.amount,
                middleware=self.name,
            )
            connection.close()
            return
        connection.onClose(lambda: self.counter.release(clientIP))
        self.next.serveTCP(connection)


def _ipAllowList(build: Any, info: ObjectInfo, next: Any) -> Any:
    config = info.config.config()
    try:
        checker = IPChecker.fromStrings(config.sourceRange)
    except RuleError as e:
        raise BuildError(f"sourceRange: {e}") from None
    return IPAllowListHandler(info.name, checker, next)


def _inFlightConn(build: Any, info: ObjectInfo, next: Any) -> Any:
    config = info.config.inFlightConn
    counters = build.shared.setdefault("tcpInFlight", {})
    key = (info.name, config)
    counter = counters.get(key)
    if counter is None:
        counter = counters[key] = InFlightCounter()
    build.inFlightUsed.add(key)
    return InFlightConnHandler(info.name, config.amount, counter, next)


TCP_MIDDLEWARE_BUILDERS: dict[str, Callable[[Any, ObjectInfo, Any], Any]] = {
    "ipAllowList": _ipAllowList,
    "ipWhiteList": _ipAllowList,
    "inFlightConn": _inFlightConn,
}
