"""
The watcher: the latest configuration of each provider, throttled per provider
(latest wins), unchanged input skipped, names qualified as C{name@provider},
everything merged and compiled into a new runtime that listeners swap in. A
build that fails keeps the last good runtime.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError
from relayd.config.merge import mergeProviders
from relayd.config.static import StaticConfig
from relayd.providers.base import ProviderUpdate
from relayd.runtime.build import BuildContext, Runtime, build

Listener = Callable[[Runtime], None]


class Watcher:
    """
    @ivar runtime: the current generation.
    @ivar reloads: how many generations were built after the first.
    @ivar lastError: the exception of the last failed build, if the last build failed.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        static: StaticConfig,
        internal: Mapping[str, Callable[[BuildContext], Any]] | None = None,
        reactor: Any = None,
    ) -> None:
        self.clock = clock
        self.static = static
        self.throttle = float(static.providers.providersThrottleDuration)
        self.internal = internal or {}
        self.reactor = reactor if reactor is not None else clock
        self.shared: dict[str, Any] = {}
        self.listeners: list[Listener] = []
        self.current: dict[str, ProviderUpdate] = {}
        self._pending: dict[str, ProviderUpdate] = {}
        self._timers: dict[str, IDelayedCall] = {}
        self._lastApplied: dict[str, float] = {}
        self.reloads = 0
        self.lastSuccess: float | None = None
        self.lastError: Exception | None = None
        self.runtime = self._build(0)

    def addListener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def update(self, update: ProviderUpdate) -> None:
        """
        Take a provider's new configuration: skipped if unchanged, applied now
        if the provider's throttle window is over, else kept as the pending one
        (a newer update replaces it).
        """
        name = update.provider
        latest = self._pending.get(name) or self.current.get(name)
        if latest == update:
            return
        if name in self._timers:
            self._pending[name] = update
            return
        last = self._lastApplied.get(name)
        now = self.clock.seconds()
        if last is None or now - last >= self.throttle:
            self._apply(update)
            return
        self._pending[name] = update
        self._timers[name] = self.clock.callLater(last + self.throttle - now, self._flush, name)

    def _flush(self, name: str) -> None:
        del self._timers[name]
        update = self._pending.pop(name, None)
        if update is not None and update != self.current.get(name):
            self._apply(update)

    def _apply(self, update: ProviderUpdate) -> None:
        self._lastApplied[update.provider] = self.clock.seconds()
        self.current[update.provider] = update
        runtime = self._build(self.runtime.generation + 1)
        if runtime is self.runtime:
            return
        self.runtime = runtime
        self.reloads += 1
        for listener in self.listeners:
            listener(runtime)

    def providerErrors(self) -> dict[str, tuple[ConfigError, ...]]:
        return {name: u.errors for name, u in self.current.items() if u.errors}

    def _build(self, generation: int) -> Runtime:
        previous = getattr(self, "runtime", None)
        try:
            merged, mergeErrors = mergeProviders(
                [(name, update.config) for name, update in self.current.items()]
            )
            errors = self.providerErrors()
            if mergeErrors:
                errors["merge"] = tuple(mergeErrors)
            runtime = build(
                self.static,
                merged,
                generation,
                reactor=self.reactor,
                previous=previous,
                internal=self.internal,
                providerErrors=errors,
                shared=self.shared,
            )
        except Exception as e:
            self.lastError = e
            if previous is None:
                raise
            self._log.failure(
                "building configuration generation {generation} failed; "
                "still serving generation {current}",
                generation=generation,
                current=previous.generation,
            )
            return previous
        self.lastError = None
        self.lastSuccess = self.clock.seconds()
        self._log.info(
            "configuration generation {generation}: {routers} HTTP routers, {services} services",
            generation=generation,
            routers=len(runtime.routers),
            services=len(runtime.services),
        )
        return runtime

    def stop(self) -> Any:
        """
        Cancel pending throttled updates and close shared resources (the
        upstream connection pool); returns a Deferred when there is one.
        """
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        from twisted.internet import defer

        closing = []
        for name in ("forwarder", "health"):
            resource = self.shared.get(name)
            if resource is not None:
                closing.append(defer.maybeDeferred(getattr(resource, "close", None) or resource.stop))
        return defer.gatherResults(closing)


def emptyConfig() -> DynamicConfig:
    return DynamicConfig()
