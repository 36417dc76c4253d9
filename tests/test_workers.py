"""
Worker processes (C{workers = 2}): both workers serve the shared address,
both follow reloads and health checks, a dead worker is restarted, and SIGTERM
stops them all with exit code 0.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import TestCase

from tests.helpers import RelaydProcess, freePorts, startBackend, tempdir, writeFile
from tests.test_lifecycle import atomicWrite


def _get(port: int) -> tuple[int, str]:
    """
    One request on a new connection (so the kernel may pick either worker).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": "app.example", "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return response.status, ""
        return 200, json.loads(body)["backend"]
    finally:
        connection.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _socketInodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _holdersOfConnectionsTo(port: int, pids: list[int]) -> set[int]:
    """
    Which of C{pids} hold an established TCP connection to 127.0.0.1:port
    (relayd's pooled upstream connections).
    """
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                inodes.add(inode)
    return {pid for pid in pids if _socketInodes(pid) & inodes}


DYNAMIC = """
[http.routers.app]
rule = "Host(`app.example`)"
service = "app"

[http.services.app.loadBalancer]
{health}
{servers}
"""


def _dynamic(ports: list[int], health: bool = False) -> str:
    servers = "\n".join(f'[[http.services.app.loadBalancer.servers]]\nurl = "http://127.0.0.1:{p}"' for p in ports)
    check = '[http.services.app.loadBalancer.healthCheck]\npath = "/health"\ninterval = "100ms"\ntimeout = "1s"\n'
    return DYNAMIC.format(servers=servers, health=check if health else "")


class WorkersTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_workersShareReloadsAndHealth(self) -> Any:
        """
        With two workers both serve requests, a reload reaches both, a
        failing health check takes a server out in both, one killed worker
        is started again, and SIGTERM to the first process ends all of them
        with exit code 0.
        """
        backendA, echoA = startBackend("A")
        backendB, echoB = startBackend("B")
        self.addCleanup(backendA.stopListening)
        self.addCleanup(backendB.stopListening)
        a, b = backendA.getHost().port, backendB.getHost().port
        directory = tempdir(self)
        (web,) = freePorts(1)
        dynamic = os.path.join(directory, "dynamic.toml")
        atomicWrite(dynamic, _dynamic([a]))
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
workers = 2

[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"

[providers]
providersThrottleDuration = "10ms"

[providers.file]
filename = "{dynamic}"
pollInterval = "50ms"
""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        yield process.waitForLog("worker 1 of 2")
        yield task.deferLater(reactor, 1.0, lambda: None)
        master = process.process.pid
        workers = [master] + _children(master)
        self.assertEqual(len(workers), 2, process.output())

        results = yield threads.deferToThread(lambda: [_get(web) for _ in range(40)])
        self.assertEqual(set(results), {(200, "A")})
        self.assertEqual(_holdersOfConnectionsTo(a, workers), set(workers), "both workers served requests")

        atomicWrite(dynamic, _dynamic([b]))
        yield task.deferLater(reactor, 1.0, lambda: None)
        results = yield threads.deferToThread(lambda: [_get(web) for _ in range(40)])
        self.assertEqual(set(results), {(200, "B")}, "every worker reloaded")

        # The echo backend answers /health with 200; A is made to fail it.
        echoA.failPaths = {"/health"}
        atomicWrite(dynamic, _dynamic([a, b], health=True))
        yield task.deferLater(reactor, 1.5, lambda: None)
        results = yield threads.deferToThread(lambda: [_get(web) for _ in range(40)])
        self.assertEqual(set(results), {(200, "B")}, "A is unhealthy in every worker")

        (worker,) = _children(master)
        os.kill(worker, signal.SIGKILL)
        yield process.waitForLog("worker 1 exited")
        yield process.waitForLog("worker 1 started", timeout=10)
        # The replacement starts with every server UP (as Traefik does) until
        # its own first probe of A fails: the third such line of this run.
        yield process.waitForLog(f"server http://127.0.0.1:{a} of service app@file is DOWN", timeout=20, count=3)
        replacement = _children(master)
        self.assertEqual(len(replacement), 1)
        self.assertNotEqual(replacement, [worker])
        results = yield threads.deferToThread(lambda: [_get(web) for _ in range(20)])
        self.assertEqual(set(results), {(200, "B")})

        process.process.send_signal(signal.SIGTERM)
        code = yield threads.deferToThread(process.process.wait, 30)
        self.assertEqual(code, 0, process.output())
        self.assertFalse(os.path.exists(f"/proc/{replacement[0]}/stat") and _children(master))
