#!/usr/bin/env python3
"""WebSocket round trips and idle-connection memory of relayd.

Two parts, both on 127.0.0.x only.

throughput: closed-loop echo round trips (each connection sends a message,
    waits for its echo, sends the next) for each message size (default 64
    and 16384 bytes), directly against an echo origin ("direct") and through
    relayd. Reported: round trips/s, p50 and p99, the proxy's CPU time per
    round trip, and the CPU used by the client and the origin, which share
    one core: when they fill it, that core and not the proxy was the limit.
    Two ways to run it:

    peers (default when ../shared/bench/proxybench.sh exists and nginx is
        installed): the peer harness's --ws phase, once per size, with relayd
        as an extra target beside nginx and Caddy (its python websockets
        client and echo origin); prints relayd/caddy per size.
    standalone (--standalone, or without the harness): the stdlib client and
        echo origin of benchmarks/wsload.py, direct and relayd only. With
        --profile DIR, one more (unmeasured) relayd run per size is sampled
        with py-spy and the busiest functions are listed.

    CPU pinning (unless --no-pin, taskset is missing or there is one CPU):
    client and origin on the first CPU, relayd alone on the second.

idle: --idle N WebSockets (default 10,000) through relayd with --workers
    processes (default 2; every relayed WebSocket holds two sockets in
    relayd, so 10,000 do not fit under a 20,000 open-files limit in one
    process), opened by several client processes from 127.0.0.2, 127.0.0.3,
    ... to one or more echo origin processes. One message on each proves it
    live. Then relayd's RSS (VmRSS summed over the supervisor and its
    workers) is read, each WebSocket is checked again with a second message,
    all are closed, and relayd must drop its sockets again; its RSS after
    that is reported too. The same with one process and --idle-single
    WebSockets (default 5,000) shows the per-connection cost without a
    second process. Targets: relayd/caddy >= 0.50 in round trips/s, and
    10,000 idle WebSockets in less than 300 MB.

Everything this script starts runs in its own session and is stopped by
process group when it ends, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import benchlib
import wsload
from benchlib import (HERE, PROXYBENCH, ROOT, Children, Stop, fmt, loadavgText, memory, outputOf,
                      ratio, tail)

WSLOAD = os.path.join(HERE, "wsload.py")

PEER_TARGETS = "nginx,caddy"
PEER_BASE_PORT = 18080
SATURATED_PCT = 90.0
IDLE_TARGET_MB = 300.0
RATIO_TARGET = 0.5
IDLE_MESSAGE_BYTES = 14


say = benchlib.sayer("ws-bench")


def readEvents(procs: list[subprocess.Popen], event: str, timeout: float) -> dict[int, dict]:
    """
    The next "WSLOAD {...}" line of kind C{event} from each process's
    stdout, by PID; RuntimeError when one exits or C{timeout} passes first.
    """
    found: dict[int, dict] = {}
    pending = {proc.stdout.fileno(): proc for proc in procs}
    partial = {fd: b"" for fd in pending}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in pending:
            selector.register(fd, selectors.EVENT_READ)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("%d of %d %s did not report %r within %.0f s" % (
                    len(pending), len(procs), pending[next(iter(pending))].label, event, timeout))
            for key, _ in selector.select(min(left, 1.0)):
                fd = key.fd
                chunk = os.read(fd, 65536)
                proc = pending[fd]
                if not chunk:
                    selector.unregister(fd)
                    del pending[fd]
                    proc.wait(timeout=5)
                    raise RuntimeError("%s (pid %d) exited (status %s) before reporting %r" % (
                        proc.label, proc.pid, proc.returncode, event))
                partial[fd] += chunk
                while b"\n" in partial[fd] and fd in pending:
                    line, partial[fd] = partial[fd].split(b"\n", 1)
                    if not line.startswith(b"WSLOAD "):
                        continue
                    fields = json.loads(line[7:])
                    if fields.get("event") == event:
                        found[proc.pid] = fields
                        selector.unregister(fd)
                        del pending[fd]
    return found


def command(procs: list[subprocess.Popen], word: str) -> None:
    for proc in procs:
        proc.stdin.write((word + "\n").encode())
        proc.stdin.flush()


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------
def relaydProcesses(sid: int) -> list[int]:
    """
    relayd's processes in session C{sid} (the shell that relayd-target.sh
    was is exec'd away; taskset too).
    """
    return [pid for pid in benchlib.sessionMembers(sid) if "twistd" in cmdline(pid)]


def cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def socketCount(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def relaydState(sid: int) -> dict:
    """
    Per relayd process: RSS, anonymous RSS and open sockets; and the totals.
    """
    procs = []
    for pid in relaydProcesses(sid):
        mem = memory(pid)
        if mem:
            procs.append({"pid": pid, "rss_kib": mem.get("VmRSS", 0),
                          "anon_kib": mem.get("RssAnon", 0), "sockets": socketCount(pid)})
    return {"processes": procs, "rss_kib": sum(p["rss_kib"] for p in procs),
            "anon_kib": sum(p["anon_kib"] for p in procs),
            "sockets": sum(p["sockets"] for p in procs)}


def probe(port: int, timeout: float = 3.0) -> str | None:
    """
    None when a WebSocket handshake and one echo through 127.0.0.1:C{port}
    work, else what went wrong.
    """
    message = b"probe"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            request, accept = wsload.handshakeRequest(port)
            s.sendall(request)
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return "connection closed during the handshake"
                buf += chunk
            end = buf.find(b"\r\n\r\n")
            problem = wsload.checkResponse(bytes(buf[:end]), accept)
            if problem:
                return problem
            del buf[:end + 4]
            s.sendall(wsload.frame(wsload.OP_BINARY, message, True))
            frames: list = []
            while not frames:
                frames = wsload.parseFrames(buf)
                if frames:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    return "connection closed before the echo"
                buf += chunk
            if frames[0][1] != message:
                return "wrong echo %r" % frames[0][1][:40]
            s.sendall(wsload.frame(wsload.OP_CLOSE, b"\x03\xe8", True))
    except OSError as e:
        return str(e) or type(e).__name__
    return None


def waitReady(port: int, proc: subprocess.Popen, timeout: float, listening: int = 1) -> str | None:
    """
    Until C{listening} sockets listen on C{port} and a WebSocket echoes
    through it; None or what went wrong.
    """
    def check() -> str | None:
        found = benchlib.listeners(port)
        return probe(port) if found >= listening else "%d of %d listening sockets" % (found, listening)
    return benchlib.waitReady(proc, timeout, check)


def checkInterpreter(python: str) -> dict:
    """
    What relayd-target.sh will run (interpreter, Twisted, autobahn, the
    relayd source it imports), or SystemExit when it cannot run relayd.
    """
    return benchlib.checkInterpreter(python, ("autobahn",), ("relayd.proxy.websocket",))


def relaydEnv(args: argparse.Namespace, workers: int | None, configDir: str) -> dict:
    """
    Variables for relayd-target.sh; C{None} removes one.
    """
    return dict({"BENCH_WORKERS": None},
                **benchlib.targetEnv(args.python, workers if workers and workers > 1 else None, configDir))


# ---------------------------------------------------------------------------
# starting origins and relayd
# ---------------------------------------------------------------------------
def startEcho(kids: Children, work: str, processes: int = 1, cpu: int | None = None) -> tuple[list, int]:
    """
    C{processes} wsload echo origins sharing one port; (processes, port).
    """
    procs: list = []
    port = 0
    for n in range(processes):
        argv = [sys.executable, WSLOAD, "echo", str(port)] + (["--reuse-port"] if processes > 1 else [])
        proc = kids.spawn("echo origin %d" % (n + 1), argv, cpu=cpu, stdout=subprocess.PIPE,
                          logfile=os.path.join(work, "echo-origin.log"))
        port = readEvents([proc], "listening", 15)[proc.pid]["port"]
        procs.append(proc)
    problem = probe(port)
    if problem:
        raise RuntimeError("the echo origin does not echo: %s" % problem)
    return procs, port


def startRelayd(args: argparse.Namespace, kids: Children, work: str, name: str, upstreamPort: int,
                workers: int | None = None, cpu: int | None = None) -> tuple[subprocess.Popen, int, str]:
    """
    relayd on a free port in front of 127.0.0.1:C{upstreamPort}; (process,
    port, log file).
    """
    port = benchlib.freePort()
    log = os.path.join(work, "%s.log" % name)
    env = relaydEnv(args, workers, os.path.join(work, name))
    proc = kids.spawn(name, benchlib.targetArgv(port, upstreamPort, args.relayd_args), cpu=cpu, env=env,
                      logfile=log)
    problem = waitReady(port, proc, args.start_timeout, listening=workers or 1)
    if problem:
        raise RuntimeError("relayd %s; the end of its log:\n%s" % (problem, tail(log) or "(empty)"))
    if workers and workers > 1:
        deadline = time.monotonic() + args.start_timeout
        while len(relaydProcesses(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
    return proc, port, log


# ---------------------------------------------------------------------------
# throughput, standalone
# ---------------------------------------------------------------------------
def runRtt(args: argparse.Namespace, kids: Children, port: int, size: int, cpu: int | None,
           watch: dict[str, int]) -> dict:
    argv = [sys.executable, WSLOAD, "rtt", str(port), "--connections", str(args.connections),
            "--size", str(size), "--warmup", str(args.warmup), "--duration", str(args.duration)]
    for name, sid in watch.items():
        argv += ["--watch", "%s=%d" % (name, sid)]
    proc = kids.spawn("rtt client", argv, cpu=cpu, stdout=subprocess.PIPE, quiet=True,
                      logfile=os.path.join(args.work, "clients.log"))
    try:
        got = readEvents([proc], "rtt", args.warmup + args.duration + 90)[proc.pid]
    finally:
        kids.stop(proc, grace=2.0, quiet=True)
    if got.get("error"):
        raise RuntimeError("rtt client: %s" % got["error"])
    return got


def rttRow(got: dict, target: str, size: int) -> dict:
    """
    One table row from a wsload rtt result.
    """
    row = {"target": target, "size": size, "rt_per_s": got["rt_per_s"],
           "round_trips": got["round_trips"],
           "p50_ms": got["p50_us"] and got["p50_us"] / 1000.0,
           "p99_ms": got["p99_us"] and got["p99_us"] / 1000.0,
           "max_ms": got["max_us"] and got["max_us"] / 1000.0,
           "errors": got["connect_errors"] + got["dropped"] + got["bad_echo"],
           "client_cpu_pct": got.get("client_cpu_pct"), "origin_cpu_pct": got.get("origin_cpu_pct"),
           "cpus": got.get("cpus")}
    if "proxy_cpu_s" in got:
        row["proxy_cpu_pct"] = got["proxy_cpu_pct"]
        row["proxy_us_per_rt"] = (1e6 * got["proxy_cpu_s"] / got["round_trips"]
                                  if got["round_trips"] else None)
    return row


def median(rows: list[dict]) -> dict:
    """
    The run with the median round trips/s; every run is kept under "runs".
    """
    chosen = benchlib.median(rows, "rt_per_s")
    if len(rows) > 1:
        chosen["runs"] = rows
    return chosen


def standaloneThroughput(args: argparse.Namespace, kids: Children, work: str, pins: tuple | None,
                         report: dict) -> None:
    cpuLoad, cpuRelayd = pins if pins else (None, None)
    origins, originPort = startEcho(kids, work, 1, cpuLoad)
    relayd, relaydPort, _ = startRelayd(args, kids, work, "relayd-throughput", originPort, cpu=cpuRelayd)
    report["throughput"]["client"] = ("benchmarks/wsload.py rtt (stdlib asyncio, %s) and its echo "
                                      "origin (1 process)" % report["machine"]["driver_python"])
    rows = report["throughput"]["rows"]
    for size in args.sizes:
        for target, port, proxy in (("direct", originPort, None), ("relayd", relaydPort, relayd)):
            say("%s, %d-byte messages: %d x (%ss warm-up + %ss)" % (
                target, size, args.repeat, args.warmup, args.duration))
            watch = {"origin": origins[0].pid}
            if proxy is not None:
                watch["proxy"] = proxy.pid
            runs = [rttRow(runRtt(args, kids, port, size, cpuLoad, watch), target, size)
                    for _ in range(args.repeat)]
            row = median(runs)
            if proxy is not None and proxy.poll() is not None:
                raise RuntimeError("relayd exited during the run (status %s)" % proxy.returncode)
            rows.append(row)
            say("  %.0f round trips/s, p50 %.2f ms, p99 %.2f ms%s" % (
                row["rt_per_s"], row["p50_ms"] or 0, row["p99_ms"] or 0,
                ", relayd %.0f µs/round trip" % row["proxy_us_per_rt"] if row.get("proxy_us_per_rt") else ""))
            if proxy is not None and args.profile:
                profileRun(args, kids, port, size, cpuLoad, relayd, report)
    for proc in [relayd] + origins:
        kids.stop(proc)


def profileRun(args: argparse.Namespace, kids: Children, port: int, size: int, cpu: int | None,
               relayd: subprocess.Popen, report: dict) -> None:
    """
    One unmeasured relayd run sampled with py-spy (on the load CPU, not
    relayd's); keeps the raw stacks and the busiest functions.
    """
    if not shutil.which("py-spy"):
        say("--profile: py-spy is not installed; skipped")
        return
    os.makedirs(args.profile, exist_ok=True)
    pid = relaydProcesses(relayd.pid)[0]
    raw = os.path.abspath(os.path.join(args.profile, "relayd-ws-%d.txt" % size))
    seconds = max(2, int(args.duration))
    say("profiling relayd (pid %d) for %d s with %d-byte messages" % (pid, seconds, size))
    client = [sys.executable, WSLOAD, "rtt", str(port), "--connections", str(args.connections),
              "--size", str(size), "--warmup", "1", "--duration", str(seconds + 2)]
    load = kids.spawn("rtt client (profiled run)", client, cpu=cpu, stdout=subprocess.PIPE, quiet=True)
    try:
        time.sleep(1.5)
        before = benchlib.sessionCpuSeconds(relayd.pid)
        began = time.monotonic()
        spy = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
               "--format", "raw", "--function", "--nonblocking", "--output", raw]
        done = subprocess.run(benchlib.pinned(spy, cpu), capture_output=True, text=True, timeout=seconds + 60)
        cpuPct = 100.0 * (benchlib.sessionCpuSeconds(relayd.pid) - before) / (time.monotonic() - began)
        if done.returncode != 0 or not os.path.exists(raw):
            say("py-spy failed: %s" % (done.stderr.strip()[-400:]))
            return
    finally:
        kids.stop(load, grace=2.0, quiet=True)
    report["profiles"][str(size)] = dict(profileSummary(raw), raw=raw, relayd_cpu_pct=cpuPct)


def profileSummary(path: str, top: int = 15) -> dict:
    """
    Sample shares from py-spy's raw (collapsed) stacks. Samples that end in
    the reactor's poll are counted apart ("in epoll"): py-spy does not
    always see that the thread is blocked there. The rest are "busy": self
    time per function and per component (relayd, autobahn, Twisted, the
    standard library, others), and the functions outside Twisted that are
    on the stack most often (under 90% of the samples: not the scaffolding).
    """
    tally = benchlib.StackTally(component)
    total = polling = 0
    for stack, n in benchlib.rawStacks(path):
        total += n
        frames = [shortFrame(x) for x in stack]
        if frames[-1].startswith("EPollReactor.doPoll "):
            polling += n
            continue
        tally.add(frames, n)
    busy = total - polling
    return dict({"samples": total, "in_epoll": polling, "busy": busy}, **tally.shares(busy, top))


def component(frame: str) -> str:
    where = frame.rpartition(" (")[2]
    for prefix, name in (("relayd/", "relayd"), ("autobahn/", "autobahn"), ("twisted/", "Twisted"),
                         ("txaio/", "txaio"), ("stdlib/", "standard library")):
        if where.startswith(prefix):
            return name
    return where.split("/", 1)[0].rstrip(")") or "other"


def shortFrame(text: str) -> str:
    """
    "onMessageEnd (relayd/proxy/websocket.py:310)" with the path cut after
    site-packages or the checkout, and without the line number.
    """
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for mark in ("site-packages/", "/lib/python3", ROOT + "/"):
        if mark in where:
            where = where.split(mark, 1)[1]
            if mark.startswith("/lib/python3"):
                where = "stdlib/" + where.split("/", 1)[-1]
    return "%s (%s)" % (name, where) if where else name


# ---------------------------------------------------------------------------
# throughput, with the peer harness
# ---------------------------------------------------------------------------
def peerPorts(args: argparse.Namespace) -> tuple[int, int, int]:
    """
    The harness's origin port, relayd's port and the WebSocket origin's
    port: 18080, 18090 and 18180 when free, else the first free block.
    """
    def blockFree(b: int) -> bool:
        return all(benchlib.portFree(p) for p in list(range(b, b + 7)) + [b + 10, b + 100])
    for base in [PEER_BASE_PORT] + list(range(28080, 60000, 200)):
        if blockFree(base):
            return base, base + 10, base + 100
    raise RuntimeError("no free block of ports for the peer harness")


def peerThroughput(args: argparse.Namespace, kids: Children, work: str, report: dict) -> None:
    base, relaydPort, wsPort = peerPorts(args)
    targets = [t for t in args.targets.split(",") if t and t not in ("direct", "relayd")]
    command = benchlib.harnessCommand(args.relayd_args, ("exec",))
    env = {"PYTHON": args.python, "BENCH_WORKERS": None, "BENCH_CONFIG_DIR": None}
    cells: dict[tuple[str, int], list[dict]] = {}
    versions: dict = {}
    limit = (len(targets) + 2) * (args.warmup + args.duration + 150 + 2 * args.start_timeout + 20) + 120
    for size in args.sizes:
        for repeat in range(args.repeat):
            out = os.path.join(work, "proxybench-%d-%d.json" % (size, repeat))
            argv = ["bash", PROXYBENCH, "--targets", "", "--bodies", "", "--ws",
                    "--ws-targets", ",".join(["direct"] + targets), "--ws-msg-bytes", str(size),
                    "--ws-connections", str(args.connections), "--ws-duration", str(args.duration),
                    "--warmup", str(args.warmup), "--extra", "relayd=" + command,
                    "--extra-port", str(relaydPort), "--base-port", str(base), "--ws-port", str(wsPort),
                    "--start-timeout", str(int(args.start_timeout)), "--json", out]
            if args.no_pin:
                argv.append("--no-pin")
            if args.harness_python:
                argv += ["--python", args.harness_python]
            say("peer harness, %d-byte messages (run %d of %d, at most %d min)" % (
                size, repeat + 1, args.repeat, limit // 60))
            log = os.path.join(work, "proxybench.log")
            proc = kids.spawn("peer harness", argv, env=env, logfile=log, cwd=ROOT)
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                raise RuntimeError("the peer harness ran past %d s" % limit)
            finally:
                # SIGTERM lets it stop the proxies it started
                kids.stop(proc, grace=30.0)
            try:
                with open(out) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise RuntimeError("no JSON from the peer harness (exit %s): %s\n%s" % (
                    proc.returncode, e, tail(log)))
            if data.get("fatal"):
                raise RuntimeError("the peer harness stopped: %s\n%s" % (data["fatal"], tail(log)))
            report["throughput"].setdefault("harness_machine", data.get("machine"))
            for name, got in (data.get("ws") or {}).items():
                cells.setdefault((name, size), []).append(harnessRow(got, name, size))
                say("  %-7s %s" % (name, "%.0f round trips/s" % got["rt_per_s"] if "rt_per_s" in got
                                   else got.get("error")))
    rows = report["throughput"]["rows"]
    for size in args.sizes:
        for name in ["direct"] + targets + ["relayd"]:
            runs = cells.get((name, size))
            if not runs:
                continue
            good = [r for r in runs if "error" not in r]
            rows.append(median(good) if good else runs[0])
    for name, argv in (("nginx", ["nginx", "-v"]), ("caddy", ["caddy", "version"])):
        if name in targets:
            versions[name] = (outputOf(argv) or "?").split(":", 1)[-1].strip().split()[0]
    report["throughput"]["versions"] = versions
    report["throughput"]["client"] = ("the peer harness's ws_client.py and ws_echo_server.py "
                                      "(the python websockets library, 1 process each)")
    report["throughput"]["ports"] = {"harness_base": base, "relayd": relaydPort, "ws_origin": wsPort}


def harnessRow(got: dict, target: str, size: int) -> dict:
    """
    One table row from a proxybench WebSocket result.
    """
    if "error" in got or not got.get("round_trips"):
        return {"target": target, "size": size, "rt_per_s": 0.0,
                "error": got.get("error") or "no round trips: %s" % got.get("first_exception", "?")}
    rate = got["rt_per_s"]
    row = {"target": target, "size": size, "rt_per_s": rate, "round_trips": got["round_trips"],
           "p50_ms": got["lat_p50_us"] / 1000.0, "p99_ms": got["lat_p99_us"] / 1000.0,
           "errors": got.get("exceptions", 0) + got.get("bad_echo", 0),
           "client_cpu_pct": got.get("client_cpu_pct"), "origin_cpu_pct": got.get("origin_cpu_pct")}
    if got.get("proxy_cpu_pct") is not None:
        row["proxy_cpu_pct"] = got["proxy_cpu_pct"]
        row["proxy_us_per_rt"] = 1e4 * got["proxy_cpu_pct"] / rate if rate else None
    return row


# ---------------------------------------------------------------------------
# idle WebSockets
# ---------------------------------------------------------------------------
def idleRun(args: argparse.Namespace, kids: Children, work: str, count: int, workers: int) -> dict:
    """
    Open C{count} WebSockets through relayd with C{workers} processes, read
    its memory, check them, close them, read it again.
    """
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    perRelayd = 2 * count / workers
    if workers > 1:
        perRelayd *= 1.1   # SO_REUSEPORT spreads by hash, not evenly
    if perRelayd + 200 > limit:
        raise RuntimeError("%d WebSockets need about %d sockets in each of %d relayd process(es), "
                           "over the open-files limit %d: use more --workers" % (
                               count, perRelayd, workers, limit))
    clients = max(1, math.ceil(count / args.per_client))
    originProcs = max(1, math.ceil(count / 5000), math.ceil(count * 1.2 / max(1000, limit - 500)))
    name = "relayd-idle-%d-w%d" % (count, workers)
    result: dict = {"count": count, "workers": workers, "client_processes": clients,
                    "origin_processes": originProcs}
    say("idle: %d WebSockets, relayd with %d process(es), %d client process(es), %d origin "
        "process(es)" % (count, workers, clients, originProcs))
    started = []
    try:
        origins, originPort = startEcho(kids, work, originProcs)
        started += origins
        relayd, port, log = startRelayd(args, kids, work, name, originPort, workers=workers)
        started.append(relayd)
        result["at_start"] = relaydState(relayd.pid)
        # warm-up: a few WebSockets opened, used and closed before the baseline
        warm = holdClients(args, kids, port, [min(50, count)], "warm-up client")
        readEvents(warm, "opened", 60)
        command(warm, "close")
        readEvents(warm, "closed", 60)
        for proc in warm:
            kids.stop(proc, quiet=True)
        result["baseline"] = base = settledState(relayd.pid, result["at_start"]["sockets"], 30)
        result["rounds"] = []
        for turn in range(args.idle_rounds):
            result["rounds"].append(idleRound(args, kids, port, relayd, base, count, clients, turn))
        result.update(result["rounds"][0])
        if relayd.poll() is not None:
            raise RuntimeError("relayd exited (status %s):\n%s" % (relayd.returncode, tail(log)))
        result["log_tail"] = tail(log, 10)
    finally:
        for proc in reversed(started):
            kids.stop(proc)
    return result


def idleRound(args: argparse.Namespace, kids: Children, port: int, relayd: subprocess.Popen,
              base: dict, count: int, clients: int, turn: int) -> dict:
    """
    One round: open C{count} WebSockets, read relayd's state, echo on each
    once more, close them all, read its state again once its sockets are
    gone. A second round shows whether the memory of the first is reused
    (allocator) or kept (a leak).
    """
    out: dict = {"round": turn + 1}
    shares = [count // clients + (1 if n < count % clients else 0) for n in range(clients)]
    procs = holdClients(args, kids, port, shares, "idle client", first=turn * clients)
    try:
        began = time.monotonic()
        opened = readEvents(procs, "opened", 120 + count / 50.0)
        out["open_seconds"] = round(time.monotonic() - began, 1)
        out["opened"] = sum(e["opened"] for e in opened.values())
        out["failed"] = sum(e["failed"] for e in opened.values())
        out["first_error"] = next((e["first_error"] for e in opened.values() if e["first_error"]), None)
        out["live"] = sum(e["live"] for e in opened.values())
        say("  round %d: opened %d (%d failed) in %.1f s" % (
            turn + 1, out["opened"], out["failed"], out["open_seconds"]))
        time.sleep(2.0)
        out["open_before_echo"] = relaydState(relayd.pid)
        command(procs, "echo")
        echoed = readEvents(procs, "echo", 120)
        out["live_after"] = sum(e["live"] for e in echoed.values())
        time.sleep(1.0)
        out["open"] = state = relaydState(relayd.pid)
        extra = state["rss_kib"] - base["rss_kib"]
        out["kib_per_websocket"] = extra / out["opened"] if out["opened"] else None
        out["per_process"] = [
            {"pid": p["pid"], "websockets": (p["sockets"] - next(
                (b["sockets"] for b in base["processes"] if b["pid"] == p["pid"]), 0)) // 2,
             "rss_kib": p["rss_kib"]} for p in state["processes"]]
        say("  relayd RSS %.1f MB with %d open (%.1f MB before), %.1f KB each; live on a 2nd "
            "message: %d" % (state["rss_kib"] * 1.024e-3, out["opened"], base["rss_kib"] * 1.024e-3,
                             (out["kib_per_websocket"] or 0) * 1.024, out["live_after"]))
        command(procs, "close")
        closed = readEvents(procs, "closed", 120)
        out["closed_clean"] = sum(e["clean"] for e in closed.values())
    finally:
        for proc in procs:
            kids.stop(proc, quiet=True)
    out["after_close"] = settledState(relayd.pid, base["sockets"], 60)
    out["sockets_left"] = out["after_close"]["sockets"] - base["sockets"]
    say("  closed (%d with a clean closing handshake); relayd RSS %.1f MB, %d sockets more than "
        "before" % (out["closed_clean"], out["after_close"]["rss_kib"] * 1.024e-3, out["sockets_left"]))
    return out


def holdClients(args: argparse.Namespace, kids: Children, port: int, counts: list[int],
                label: str, first: int = 0) -> list[subprocess.Popen]:
    """
    wsload hold clients for C{counts} WebSockets each, from 127.0.0.2 on
    (one address each, starting C{first} addresses further).
    """
    procs = []
    gate = max(1, args.idle_concurrency // len(counts))
    for n, count in enumerate(counts):
        argv = [sys.executable, WSLOAD, "hold", str(port), "--count", str(count),
                "--source", "127.0.0.%d" % (2 + (first + n) % 250), "--concurrency", str(gate)]
        procs.append(kids.spawn("%s %d" % (label, n + 1), argv, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, logfile=os.path.join(args.work, "clients.log"),
                                quiet=True))
    return procs


def settledState(sid: int, sockets: int, timeout: float) -> dict:
    """
    relayd's state once its socket count is back to C{sockets} (or after
    C{timeout} seconds) and two more seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while relaydState(sid)["sockets"] > sockets and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)
    return relaydState(sid)


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
def markdown(report: dict) -> str:
    r = report["relayd"]
    m = report["machine"]
    lines = ["## relayd WebSocket benchmark", "",
             "* %s, autobahn %s%s" % (
                 benchlib.relaydSummary(r), r.get("autobahn", "?"),
                 ", extra args `%s`" % report["config"]["relayd_args"] if report["config"]["relayd_args"] else ""),
             "* machine: %d CPUs, open-files limit %s, load average %s before and %s after; other "
             "work before the run (busy %%): %s" % (
                 m["cpus"], m["nofile"], "/".join(m["loadavg_before"]), "/".join(m.get("loadavg_after") or "?"),
                 ", ".join("%s %.0f" % (n, u["busy_pct"]) for n, u in m["background_load"].items()))]
    t = report.get("throughput")
    if t and t["rows"]:
        lines += throughputMarkdown(report, t)
    if report.get("profiles"):
        lines += profileMarkdown(report["profiles"])
    if report.get("idle"):
        lines += idleMarkdown(report["idle"])
    return "\n".join(lines) + "\n"


def throughputMarkdown(report: dict, t: dict) -> list[str]:
    c = report["config"]
    pinned = t.get("pinned")
    lines = [
        "", "### Round trips (%s)" % t["mode"], "",
        "* load: %s; %d connections, one message in flight on each, %s s measured after %s s "
        "warm-up%s" % (t["client"], c["connections"], c["duration"], c["warmup"],
                       ", median of %d runs" % c["repeat"] if c["repeat"] > 1 else ""),
        "* CPU pinning: %s" % t["pinning"],
    ]
    if t.get("versions"):
        lines.append("* peers: %s" % ", ".join("%s %s" % (k, v) for k, v in sorted(t["versions"].items())
                                               if k != "relayd"))
    lines += [
        "",
        "| size | target | round trips/s | vs direct | p50 ms | p99 ms | errors | proxy CPU % | "
        "proxy CPU µs/round trip | client+origin CPU % | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    direct = {row["size"]: row["rt_per_s"] for row in t["rows"] if row["target"] == "direct"}
    for row in t["rows"]:
        if row.get("error"):
            lines.append("| %d | %s | failed: %s | | | | | | | | |" % (row["size"], row["target"], row["error"][:100]))
            continue
        load = None
        if row.get("client_cpu_pct") is not None and row.get("origin_cpu_pct") is not None:
            load = row["client_cpu_pct"] + row["origin_cpu_pct"]
        notes = []
        if pinned and load is not None and load >= SATURATED_PCT and row["target"] != "direct":
            notes.append("client+origin core saturated")
        if row.get("proxy_cpu_pct") is not None and row["proxy_cpu_pct"] >= SATURATED_PCT:
            notes.append("proxy core saturated")
        if row.get("rt_per_s_all"):
            notes.append("runs " + "/".join(str(v) for v in row["rt_per_s_all"]))
        lines.append("| %d | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s |" % (
            row["size"], row["target"], fmt(row["rt_per_s"]), fmt(ratio(row["rt_per_s"], direct.get(row["size"])), "%.2f"),
            fmt(row.get("p50_ms"), "%.2f"), fmt(row.get("p99_ms"), "%.2f"), row.get("errors", 0),
            fmt(row.get("proxy_cpu_pct")), fmt(row.get("proxy_us_per_rt"), "%.1f"), fmt(load),
            "; ".join(notes)))
    cells = {(row["target"], row["size"]): row for row in t["rows"] if not row.get("error")}
    summary = []
    for size in c["sizes"]:
        rel, cad = cells.get(("relayd", size)), cells.get(("caddy", size))
        if not rel or not cad:
            continue
        measured = ratio(rel["rt_per_s"], cad["rt_per_s"])
        byCpu = ratio(cad.get("proxy_us_per_rt"), rel.get("proxy_us_per_rt"))
        cadCore = cad.get("proxy_cpu_pct")
        cadLoad = (cad.get("client_cpu_pct") or 0) + (cad.get("origin_cpu_pct") or 0)
        text = "* %d-byte messages: relayd/caddy = %.2f in round trips/s; relayd spends %.1f µs of " \
               "CPU per round trip, caddy %.1f µs, so relayd/caddy = %.2f in round trips per CPU " \
               "second" % (size, measured, rel.get("proxy_us_per_rt") or 0,
                           cad.get("proxy_us_per_rt") or 0, byCpu or 0)
        if cadCore is not None and cadCore < SATURATED_PCT:
            # caddy did not run out of CPU: its round trips/s is not what it can do
            text += (". Caddy's core was only %.0f%% busy (client+origin: %.0f%% of theirs), so its "
                     "round trips/s is not its capacity and the first ratio flatters relayd; by CPU "
                     "per round trip, the target (%.2f) is **%s** (%.2f)." % (
                         cadCore, cadLoad, RATIO_TARGET,
                         "met" if (byCpu or 0) >= RATIO_TARGET else "missed", byCpu or 0))
        else:
            text += ". Caddy ran out of CPU, so the round-trip ratio is a capacity ratio: the target " \
                    "(%.2f) is **%s** (%.2f)." % (RATIO_TARGET, "met" if measured >= RATIO_TARGET else
                                                  "missed", measured)
        summary.append(text)
    if summary:
        lines += ["", "relayd beside caddy:", ""] + summary
    lines += [
        "", "A round trip is one message each way through the proxy (two messages relayed). "
        "\"vs direct\" divides by the client talking to the origin without a proxy, the most that "
        "the client and the origin allow on their core. Proxy CPU is user+system time of all the "
        "proxy's processes over the measured window (100% = one core). client+origin CPU is the "
        "sum of both processes; pinned to one core, near 100% means that core, not the proxy, "
        "limited the run.",
    ]
    return lines


def profileMarkdown(profiles: dict) -> list[str]:
    lines = ["", "### Where relayd's time goes (py-spy, one extra unmeasured run per size)"]
    for size, p in sorted(profiles.items(), key=lambda kv: int(kv[0])):
        lines += ["", "%s-byte messages: relayd used %s%% of a core; %d samples, %d of them in the "
                  "reactor's epoll wait, left out below (raw stacks: %s)." % (
                      size, fmt(p.get("relayd_cpu_pct")), p["samples"], p["in_epoll"], p["raw"]),
                  "", "By component (self time of the busy samples): " + ", ".join(
                      "%s %.0f%%" % (name, pct) for name, pct in p["components"]) + ".",
                  ""] + benchlib.profileTable(p)
    return lines


def idleMarkdown(runs: list[dict]) -> list[str]:
    mb = 1.024e-3   # KiB to MB (10^6 bytes)
    lines = [
        "", "### Idle WebSockets through relayd", "",
        "| relayd processes | WebSockets | opened (failed) | open time s | live on a 2nd message | "
        "RSS before MB | RSS open MB | KB per WebSocket | RSS after close MB | later rounds: RSS "
        "open / after close MB | sockets left | WebSockets per process | clients / origins |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    verdicts = []
    for run in runs:
        if run.get("error") or not run.get("rounds"):
            lines.append("| %d | %d | failed: %s | | | | | | | | | | |" % (
                run["workers"], run["count"], (run.get("error") or "no round")[:120]))
            continue
        later = ", ".join("%.1f / %.1f" % (r["open"]["rss_kib"] * mb, r["after_close"]["rss_kib"] * mb)
                          for r in run["rounds"][1:]) or "-"
        lines.append("| %d | %d | %d (%d) | %.1f | %d | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %d / %d |" % (
            run["workers"], run["count"], run["opened"], run["failed"], run["open_seconds"],
            run["live_after"], run["baseline"]["rss_kib"] * mb, run["open"]["rss_kib"] * mb,
            (run["kib_per_websocket"] or 0) * 1.024, run["after_close"]["rss_kib"] * mb, later,
            "/".join(str(r["sockets_left"]) for r in run["rounds"]),
            " / ".join(str(p["websockets"]) for p in run["per_process"]),
            run["client_processes"], run["origin_processes"]))
        if run["workers"] > 1:
            counts = [p["websockets"] for p in run["per_process"]]
            fair = run["opened"] / max(1, len(counts))
            least = min(counts) / fair if fair and counts else 0.0
            verdicts.append("* %d WebSockets over %d relayd processes: %s (the least loaded has "
                            "%.0f%% of an even share)." % (
                                run["opened"], len(counts),
                                "every process got a share" if least >= 0.5 else "UNEVEN spread",
                                100.0 * least))
        left = [r["sockets_left"] for r in run["rounds"]]
        clean = [r["closed_clean"] for r in run["rounds"]]
        verdicts.append(
            "* %d WebSockets, %d relayd process(es): closing them %s; RSS with all of them open, "
            "round by round: %s MB (%.1f MB before the first)." % (
                run["count"], run["workers"],
                "freed every relayd socket" if not any(left) else
                "LEFT %s relayd sockets open" % "/".join(map(str, left)),
                " / ".join("%.1f" % (r["open"]["rss_kib"] * mb) for r in run["rounds"]),
                run["baseline"]["rss_kib"] * mb)
            + ("" if all(c == r["opened"] for c, r in zip(clean, run["rounds"])) else
               " Clean closing handshakes: %s." % "/".join(map(str, clean))))
        if run["count"] >= 10000:
            first = run["open"]["rss_kib"] * mb
            worst = max(r["open"]["rss_kib"] for r in run["rounds"]) * mb
            verdicts.append("* %d idle WebSockets: relayd's RSS %.1f MB, target under %.0f MB **%s**%s." % (
                run["count"], first, IDLE_TARGET_MB, "met" if first < IDLE_TARGET_MB else "missed",
                "" if len(run["rounds"]) < 2 else
                "; %.1f MB at most in the later rounds (%s)" % (
                    max(r["open"]["rss_kib"] for r in run["rounds"][1:]) * mb,
                    "still under" if worst < IDLE_TARGET_MB else "over")))
    lines += [""] + verdicts + ([""] if verdicts else []) + [
        "RSS is VmRSS summed over relayd's processes (supervisor and workers), read with all the "
        "WebSockets open, after a second message on each; \"before\" is after start and a warm-up of 50 WebSockets opened and "
        "closed; KB per WebSocket = (open - before) / opened. Each round opens the WebSockets, "
        "sends a second message on each, closes them all and waits for relayd's sockets to go; "
        "\"later rounds\" repeat that with the same relayd: an RSS that stays flat there is memory "
        "kept by the allocator and reused, one that grows by the first round's amount again is a "
        "leak. \"sockets left\" (per round) counts relayd's sockets after closing beyond those it "
        "had before (0: every relay was torn down). MB and KB are 10^6 and 10^3 bytes."]
    return lines


# ---------------------------------------------------------------------------
def parseArgs(argv: list[str]) -> argparse.Namespace:
    ap = benchlib.argumentParser("python3 benchmarks/websocket.py", __doc__)
    add = ap.add_argument
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true",
                      help="round trips with benchmarks/wsload.py, direct and relayd only")
    mode.add_argument("--peers", action="store_true",
                      help="round trips with the peer harness (default when it exists)")
    add("--only", choices=("throughput", "idle"), help="run one part only")
    add("--quick", action="store_true",
        help="smoke test: 3 s runs after 1 s warm-up, --idle 1000 --idle-single 300")
    add("--sizes", default="64,16384", help="message sizes in bytes, comma list (default 64,16384)")
    add("--connections", type=int, default=20, help="connections for the round trips (default 20)")
    add("--duration", type=int, default=None, help="measured seconds per run (default 10)")
    add("--warmup", type=int, default=None, help="warm-up seconds before each run (default 2)")
    add("--repeat", type=int, default=1, help="runs per cell, median kept (default 1)")
    add("--idle", type=int, default=None, metavar="N",
        help="idle WebSockets through relayd with --workers processes (default 10000; 0 skips)")
    add("--workers", type=int, default=2,
        help="relayd's 'workers' for the --idle run (default 2); the round trips use one process")
    add("--idle-single", type=int, default=None, metavar="N",
        help="idle WebSockets through a single relayd process (default 5000; 0 skips)")
    add("--per-client", type=int, default=2500,
        help="WebSockets per idle client process (default 2500)")
    add("--idle-rounds", type=int, default=2,
        help="open-check-close rounds per idle run (default 2: the second shows whether memory "
        "is reused)")
    add("--idle-concurrency", type=int, default=48,
        help="handshakes in flight over all idle clients (default 48; relayd's single-process "
        "listen backlog is 50)")
    add("--python", default=None,
        help="interpreter that runs relayd, passed as PYTHON to relayd-target.sh")
    add("--relayd-args", default="", help="extra arguments for relayd-target.sh")
    benchlib.addRunOptions(ap)
    alone = ap.add_argument_group("standalone mode")
    alone.add_argument("--profile", metavar="DIR",
                       help="sample relayd with py-spy in one extra run per size; raw stacks go to DIR")
    peer = ap.add_argument_group("peers mode")
    peer.add_argument("--targets", default=PEER_TARGETS,
                      help="the harness's proxies beside relayd (default %s)" % PEER_TARGETS)
    peer.add_argument("--harness-python", default=None,
                      help="interpreter with 'websockets' for the harness's client and origin "
                      "(default: the harness's own)")
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        ap.error("--sizes takes a comma list of byte counts")
    if args.only != "idle" and not args.sizes:
        ap.error("--sizes is empty")
    if any(s < 1 or s > 1 << 22 for s in args.sizes):
        ap.error("message sizes must be 1 to 4194304 bytes")
    quick = args.quick
    benchlib.quickDefaults(args)
    args.idle = args.idle if args.idle is not None else (1000 if quick else 10000)
    args.idle_single = args.idle_single if args.idle_single is not None else (300 if quick else 5000)
    benchlib.requireAtLeastOne(ap, args, ("connections", "repeat", "workers", "per_client", "idle_concurrency",
                                          "idle_rounds"))
    if args.idle < 0 or args.idle_single < 0 or args.warmup < 0:
        ap.error("--idle, --idle-single and --warmup cannot be negative")
    args.python = benchlib.defaultPython(args.python)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    benchlib.catchSignals()
    benchlib.raiseFileLimit()
    usePeers = args.peers
    if not (args.peers or args.standalone) and os.path.exists(PROXYBENCH):
        usePeers = shutil.which("nginx") is not None
        if not usePeers:
            say("nginx is not installed, so the peer harness cannot run: standalone round trips")
    if usePeers and not os.path.exists(PROXYBENCH):
        say("%s not found; use --standalone" % PROXYBENCH)
        return 2
    facts = checkInterpreter(args.python)
    work = args.work = tempfile.mkdtemp(prefix="relayd-ws-bench.")
    kids = Children(say, grace=10.0)
    report: dict = {
        "relayd": facts,
        "config": {"sizes": args.sizes, "connections": args.connections, "duration": args.duration,
                   "warmup": args.warmup, "repeat": args.repeat, "idle": args.idle,
                   "workers": args.workers, "idle_single": args.idle_single,
                   "per_client": args.per_client, "idle_concurrency": args.idle_concurrency,
                   "idle_rounds": args.idle_rounds,
                   "relayd_args": args.relayd_args, "argv": sys.argv},
        "machine": {"cpus": os.cpu_count(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    "driver_python": "%s %s" % (sys.implementation.name, sys.version.split()[0]),
                    "loadavg_before": loadavgText()},
        "profiles": {},
    }
    rc = 0
    try:
        report["machine"]["background_load"] = benchlib.backgroundLoad(say)
        if args.only != "idle":
            pins, pinText = benchlib.pinPlan(args.no_pin, "client and origin on CPU %d, the proxy alone on CPU %d")
            report["throughput"] = {"mode": "peer harness" if usePeers else "standalone",
                                    "pinning": pinText, "pinned": pins is not None, "rows": []}
            if usePeers:
                peerThroughput(args, kids, work, report)
            else:
                standaloneThroughput(args, kids, work, pins, report)
        if args.only != "throughput":
            report["idle"] = []
            for count, workers in ((args.idle_single, 1), (args.idle, args.workers)):
                if count:
                    try:
                        report["idle"].append(idleRun(args, kids, work, count, workers))
                    except RuntimeError as e:
                        say("idle run with %d WebSockets failed: %s" % (count, e))
                        report["idle"].append({"count": count, "workers": workers, "error": str(e)})
                        rc = 1
    except (Stop, KeyboardInterrupt) as e:
        say("interrupted (%s)" % (str(e) or "Ctrl-C"))
        rc = 130
    except RuntimeError as e:
        say("FAILED: %s" % e)
        rc = 1
    finally:
        kids.stopAll()
        report["machine"]["loadavg_after"] = loadavgText()
        benchlib.dropWork(say, work, args.keep)
    text = markdown(report)
    print(text)
    benchlib.writeOutputs(say, args.json, args.md, report, text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
