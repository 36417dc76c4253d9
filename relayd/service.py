"""
The service tree of a running relayd: providers feed the watcher, the watcher
swaps runtimes into the entrypoints. Providers start first (the file provider
loads synchronously, so the first requests already see its routes), entrypoints
after; on stop, entrypoints stop accepting first.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.application import service
from twisted.logger import Logger

from relayd.api.internal import internalServices
from relayd.config.loader import LoadedStatic
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.providers.docker import DockerProvider, SwarmProvider
from relayd.providers.file import FileProvider
from relayd.providers.http import HTTPProvider
from relayd.providers.rancher import RancherProvider
from relayd.providers.internal import internalConfig
from relayd.runtime.build import Runtime
from relayd.watcher import Watcher
from relayd.workers import WorkerSupervisor, watchSupervisor, workerIndex


class RelaydService(service.MultiService):
    _log = Logger()

    def __init__(self, loaded: LoadedStatic, reactor: Any) -> None:
        super().__init__()
        self.loaded = loaded
        self.static = loaded.config
        self.reactor = reactor
        # Shared with the internal services (ping, API, metrics): "service" is
        # this object, "startDate" when it was made (reactor seconds).
        self.state: dict[str, Any] = {"terminating": False, "startDate": reactor.seconds(), "service": self}
        self.watcher = Watcher(reactor, self.static, internal=internalServices(self.state), reactor=reactor)
        self.watcher.update(
            ProviderUpdate("internal", internalConfig(self.static, welcome=loaded.source.kind == "default"))
        )
        self.providers: list[service.Service] = []
        baseDirectory = os.path.dirname(os.path.abspath(loaded.source.path)) if loaded.source.path else ""
        fileConfig = self.static.providers.file
        if fileConfig is not None:
            self._addProvider(FileProvider(reactor, self.watcher.update, fileConfig, baseDirectory))
        httpConfig = self.static.providers.http
        if httpConfig is not None:
            self._addProvider(HTTPProvider(reactor, self.watcher.update, httpConfig))
        rancherConfig = self.static.providers.rancher
        if rancherConfig is not None:
            self._addProvider(RancherProvider(reactor, self.watcher.update, rancherConfig))
        dockerConfig = self.static.providers.docker
        if dockerConfig is not None:
            self._addProvider(DockerProvider(reactor, self.watcher.update, dockerConfig))
        swarmConfig = self.static.providers.swarm
        if swarmConfig is not None:
            self._addProvider(SwarmProvider(reactor, self.watcher.update, swarmConfig))
        for name in self.static.providers.enabled():
            if name not in ("file", "http", "rancher", "docker", "swarm"):
                self._log.warn(
                    "the {provider} provider is configured but not available in this relayd yet",
                    provider=name,
                )
        self.entryPoints: dict[str, EntryPointService] = {}
        self.workerIndex = workerIndex()
        workers = self.static.workers
        for name, config in self.static.entryPoints.items():
            ep = EntryPointService(name, config, reactor, self.watcher.runtime, reusePort=workers > 1)
            ep.setServiceParent(self)
            self.entryPoints[name] = ep
        self.watcher.addListener(self._swap)
        # Metrics (metrics.prometheus): counted on the entrypoints whose
        # observability.metrics is on, answered by prometheus@internal;
        # workers share their values through files in one directory.
        metricsConfig = self.static.metrics
        if metricsConfig is not None and metricsConfig.prometheus is not None:
            from relayd.observability.metrics import PrometheusMetrics, workersDirectory

            directory = workersDirectory(reactor, workers, self.workerIndex)
            metrics = PrometheusMetrics(metricsConfig.prometheus, reactor, lambda: self, metricsConfig.addInternals, directory)
            self.state["metrics"] = metrics
            for ep in self.entryPoints.values():
                if ep.config.observability.metrics:
                    ep.observers.append(metrics.observe)
        if workers > 1 and self.workerIndex == 0:
            grace = max((float(ep.transport.lifeCycle.requestAcceptGraceTimeout) + float(ep.transport.lifeCycle.graceTimeOut)
                         for ep in self.static.entryPoints.values()), default=10.0)
            reopen = self.static.accessLog is not None or bool(self.static.log.filePath)
            WorkerSupervisor(workers, reactor, grace, forwardReopen=reopen).setServiceParent(self)
        # The access log (accessLog), observing the entrypoints whose
        # observability.accessLogs is on; SIGUSR1 reopens its file and the
        # process log file.
        from relayd.observability.accesslog import setUp as setUpAccessLog

        self.accessLog = setUpAccessLog(self)

    def _addProvider(self, provider: service.Service) -> None:
        provider.setServiceParent(self)
        self.providers.append(provider)

    def _swap(self, runtime: Runtime) -> None:
        for ep in self.entryPoints.values():
            ep.swap(runtime)

    @property
    def runtime(self) -> Runtime:
        return self.watcher.runtime

    def startService(self) -> None:
        for warning in self.loaded.warnings:
            self._log.warn("{warning}", warning=warning)
        source = self.loaded.source
        self._log.info(
            "relayd starting with the static configuration from {source}",
            source=source.path if source.path else {"default": "the embedded default"}.get(source.kind, source.kind),
            relayd_always=True,
        )
        if self.static.workers > 1:
            self._log.info(
                "worker {index} of {count} (pid {pid})",
                index=self.workerIndex,
                count=self.static.workers,
                pid=os.getpid(),
                relayd_always=True,
            )
        super().startService()
        self._parentWatch = watchSupervisor(self.reactor) if self.workerIndex else None

    def stopService(self) -> Any:
        self.state["terminating"] = True
        if getattr(self, "_parentWatch", None) is not None and self._parentWatch.running:
            self._parentWatch.stop()
        # SIGTERM is relayd's normal stop: exit 0 (twistd would otherwise
        # re-raise the signal and report 143).
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None
        from twisted.internet import defer

        stopped = defer.maybeDeferred(super().stopService)
        # The upstream pool and health checks close once the entrypoints
        # have let their requests finish.
        stopped.addBoth(lambda _: self.watcher.stop())
        return stopped
