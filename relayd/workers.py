"""
Worker processes: with C{workers = N} in the static configuration, the relayd
started by the user runs N-1 more relayd processes with the same command line
and environment. Every process listens on the same addresses with
SO_REUSEPORT (the kernel spreads new connections across them) and runs its
own providers, reloads and health checks from the same configuration, so
every worker routes the same way. The first process supervises the others:
it restarts a worker that dies, and on stop it passes SIGTERM on and waits
for them to drain. A worker whose supervisor disappears stops by itself.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Sequence

from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger

WORKER_ENV = "RELAYD_WORKER"


def workerIndex() -> int:
    """
    0 in the process the user started, 1..N-1 in the workers it runs.
    """
    try:
        return int(os.environ.get(WORKER_ENV, "0"))
    except ValueError:
        return 0


def workerArguments(argv: Sequence[str]) -> list[str]:
    """
    twistd's arguments for a worker: the supervisor's, in the foreground
    (C{-n}) and without its pidfile.
    """
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--pidfile",):
            skip = True
            continue
        if arg.startswith("--pidfile="):
            continue
        if arg in ("-n", "--nodaemon"):
            continue
        args.append(arg)
    return ["-n", "--pidfile="] + args


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.supervisor.ended(self, reason)


class WorkerSupervisor(service.Service):
    """
    Runs and watches the other workers (see the module docstring).
    """

    _log = Logger()

    def __init__(
        self,
        count: int,
        reactor: Any,
        grace: float,
        argv: Sequence[str] | None = None,
        forwardReopen: bool = False,
    ) -> None:
        self.setName("workers")
        # Pass SIGUSR1 (reopen the log files) on to the other workers; only
        # when they handle it, since its default action ends a process.
        self.forwardReopen = forwardReopen
        self.count = count
        self.reactor = reactor
        self.grace = grace
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.workers: dict[int, tuple[_Worker, Any]] = {}
        self.restarts: dict[int, int] = {}

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count):
            self._spawn(index)
        if self.forwardReopen:
            previous = signal.getsignal(signal.SIGUSR1)

            def forward(signum: int, frame: Any) -> None:
                self.reactor.callFromThread(self.signalWorkers, signal.SIGUSR1)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(signal.SIGUSR1, forward)

    def signalWorkers(self, signalNumber: int) -> None:
        """
        Send a signal to every running worker.
        """
        for _, transport in list(self.workers.values()):
            try:
                transport.signalProcess(signalNumber)
            except Exception:
                continue

    def _spawn(self, index: int) -> None:
        worker = _Worker(self, index)
        environment = dict(os.environ)
        environment[WORKER_ENV] = str(index)
        executable = sys.executable
        args = [executable, "-c", "from twisted.scripts.twistd import run; run()", *workerArguments(self.argv)]
        transport = self.reactor.spawnProcess(
            worker, executable, args, env=environment, childFDs={0: "w", 1: 1, 2: 2}
        )
        self.workers[index] = (worker, transport)
        self._log.info(
            "worker {index} started (pid {pid})", index=index, pid=transport.pid, relayd_always=True
        )

    def ended(self, worker: _Worker, reason: Any) -> None:
        current = self.workers.get(worker.index)
        if current is None or current[0] is not worker:
            return
        del self.workers[worker.index]
        if not self.running:
            return
        restarts = self.restarts.get(worker.index, 0)
        self.restarts[worker.index] = restarts + 1
        delay = min(30.0, 0.5 * 2**restarts)
        self._log.error(
            "worker {index} exited ({reason}); starting it again in {delay}s",
            index=worker.index,
            reason=reason.getErrorMessage(),
            delay=delay,
        )
        self.reactor.callLater(delay, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self.workers:
            self._spawn(index)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        waiting = []
        for worker, transport in list(self.workers.values()):
            try:
                transport.signalProcess("TERM")
            except Exception:
                continue
            waiting.append(worker.ended)
        if not waiting:
            return defer.succeed(None)
        done = defer.DeferredList(waiting)
        # A worker that does not drain in time is killed.
        timer = self.reactor.callLater(self.grace + 5.0, self._kill)
        done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return done.addCallback(lambda _: None)

    def _kill(self) -> None:
        for _, transport in list(self.workers.values()):
            try:
                transport.signalProcess("KILL")
            except Exception:
                pass


def watchSupervisor(reactor: Any) -> task.LoopingCall:
    """
    In a worker: stop when the supervisor goes away (its pid is no longer
    our parent), so no worker outlives it.
    """
    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    call = task.LoopingCall(check)
    call.clock = reactor
    call.start(1.0, now=False)
    return call
