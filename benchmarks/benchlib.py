"""What the benchmark scripts share: child processes, /proc readings, relayd's
start through relayd-target.sh, CPU pinning, and the small helpers of their
reports.

benchmarks/http.py, websocket.py, wsload.py and tls.py import this module
from their own folder (the first entry of sys.path when one of them is run
as `python3 benchmarks/<name>.py`). http.py and tls.py then drop that folder
from sys.path with L{leaveScriptFolder}, because benchmarks/http.py would
shadow the standard library's http package; so this module must not import
anything that imports http itself. Standard library only: wsload.py runs
under whatever interpreter the benchmark uses.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET_SCRIPT = os.path.join(HERE, "relayd-target.sh")
SHARED_BENCH = os.path.normpath(os.path.join(ROOT, os.pardir, "shared", "bench"))
PROXYBENCH = os.path.join(SHARED_BENCH, "proxybench.sh")

# The bodies the origin serves for benchmarks/http.py and tls.py, so that
# their figures compare.
SMALL = b"hello, world\n"
LARGE = bytes((n * 131 + n // 256) & 0xFF for n in range(65536))
BODIES = {"small": ("/small", SMALL), "64k": ("/64k", LARGE)}

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def leaveScriptFolder() -> None:
    """
    Drop benchmarks/ from the import path: benchmarks/http.py would
    otherwise be imported for "import http.client" (by a script or inside
    the standard library).
    """
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def sayer(tag: str) -> Callable[..., None]:
    """
    A function that writes a time-stamped progress line, "[tag HH:MM:SS]
    ...", to stderr.
    """
    def say(*parts: object) -> None:
        print("[%s %s]" % (tag, time.strftime("%H:%M:%S")), *parts, file=sys.stderr, flush=True)
    return say


class Stop(Exception):
    """
    Raised from SIGTERM/SIGHUP so that the cleanup code runs.
    """


def onSignal(signum: int, frame: object) -> None:
    raise Stop("signal %d" % signum)


def catchSignals() -> None:
    """
    SIGTERM and SIGHUP raise L{Stop}, so that children are stopped.
    """
    signal.signal(signal.SIGTERM, onSignal)
    signal.signal(signal.SIGHUP, onSignal)


def raiseFileLimit() -> None:
    """
    The open-files soft limit up to the hard one, for every child too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------
def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """
    C{argv} run by taskset on C{cpu}, or as it is when C{cpu} is None.
    """
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + list(argv)


class Children:
    """
    Processes started by a script, each leading its own session, stopped by
    process group.
    """

    def __init__(self, say: Callable[..., None], grace: float = 5.0) -> None:
        self.say = say
        self.grace = grace
        self.running: list[subprocess.Popen] = []

    def spawn(self, label: str, argv: Sequence[str], cpu: int | None = None, env: dict | None = None,
              logfile: str | None = None, stdin: Any = subprocess.DEVNULL, stdout: Any = None,
              cwd: str | None = None, quiet: bool = False) -> subprocess.Popen:
        """
        Start C{argv} in a new session, pinned to C{cpu}, with C{env} added
        to the environment (a None value removes a variable); its output
        goes to C{logfile} (or is dropped), or its stdout to C{stdout} (e.g.
        a pipe) and its stderr to the log.
        """
        argv = pinned(argv, cpu)
        environ = dict(os.environ)
        environ.update(env or {})
        for name, value in list(environ.items()):
            if value is None:
                del environ[name]
        log: Any = open(logfile, "ab") if logfile else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=log if stdout is None else stdout,
                                    stderr=log, env=environ, cwd=cwd, start_new_session=True)
        finally:
            if logfile:
                log.close()
        self.adopt(proc, label)
        if not quiet:
            self.say("started %s (pid %d): %s" % (label, proc.pid, " ".join(map(shlex.quote, argv))))
        return proc

    def adopt(self, proc: subprocess.Popen, label: str) -> None:
        """
        Stop C{proc}, started elsewhere in a new session, with the others.
        """
        proc.label = label  # type: ignore[attr-defined]
        self.running.append(proc)

    def stop(self, proc: subprocess.Popen, grace: float | None = None, quiet: bool = False) -> None:
        """
        SIGTERM to the process group, SIGKILL after C{grace} seconds (the
        default of this L{Children}), then SIGKILL to anything left in the
        group; its pipes are closed.
        """
        if proc not in self.running:
            return
        self.running.remove(proc)
        # The process group id is the PID we spawned (new session).
        for sig, wait in ((signal.SIGTERM, self.grace if grace is None else grace), (signal.SIGKILL, 3.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        try:   # anything the leader left behind in its group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if not quiet:
            self.say("stopped %s (pid %d, exit %s)" % (proc.label, proc.pid, proc.returncode))  # type: ignore[attr-defined]

    def stopAll(self) -> None:
        for proc in list(reversed(self.running)):
            self.stop(proc)


def waitReady(proc: subprocess.Popen, timeout: float, check: Callable[[], str | None]) -> str | None:
    """
    Call C{check} every 0.2 s until it returns None (ready) or C{proc}
    exits or C{timeout} passes; None or what went wrong (the last answer of
    C{check} when time ran out).
    """
    deadline = time.monotonic() + timeout
    last: str | None = "nothing listening"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        last = check()
        if last is None:
            return None
        time.sleep(0.2)
    return "not ready after %gs (%s)" % (timeout, last)


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------
def statFields(entry: int | str) -> list[str] | None:
    """
    /proc/PID/stat after the command name: [0] is field 3 (state) of
    proc(5), so the session (field 6) is [3], utime and stime (fields 14
    and 15) are [11] and [12]. None when the process is gone.
    """
    try:
        with open("/proc/%s/stat" % entry) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def cpuBySession() -> dict[int, float]:
    """
    utime + stime of every live process, summed by session, in seconds.
    """
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        fields = statFields(entry) if entry.isdigit() else None
        if fields is not None:
            sid = int(fields[3])
            ticks[sid] = ticks.get(sid, 0) + int(fields[11]) + int(fields[12])
    return {sid: n / CLOCK_TICKS for sid, n in ticks.items()}


def sessionCpuSeconds(sid: int) -> float:
    """
    utime + stime of the live processes of session C{sid}.
    """
    return cpuBySession().get(sid, 0.0)


def sessionMembers(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        fields = statFields(entry) if entry.isdigit() else None
        if fields is not None and int(fields[3]) == sid:
            pids.append(int(entry))
    return sorted(pids)


def memory(pid: int, keys: Sequence[str] = ("VmRSS", "RssAnon")) -> dict[str, int]:
    """
    The C{keys} of /proc/PID/status (VmRSS and RssAnon by default), in KiB
    (empty when it is gone).
    """
    out = {}
    prefixes = tuple(key + ":" for key in keys)
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(prefixes):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def rssKib(pid: int) -> int | None:
    return memory(pid, ("VmRSS",)).get("VmRSS")


def sessionRssKib(sid: int) -> tuple[int | None, int]:
    """
    VmRSS summed over the live processes of session C{sid} (relayd and any
    workers; shared pages are counted once per process), and how many
    there were; (None, 0) when none is left.
    """
    sizes = [rssKib(pid) for pid in sessionMembers(sid)]
    found = [size for size in sizes if size is not None]
    return (sum(found), len(found)) if found else (None, 0)


def cpuCounters() -> dict[str, tuple[int, int, int]]:
    """
    {"cpu0": (busy, steal, total), ...} in clock ticks, from /proc/stat.
    """
    counters = {}
    with open("/proc/stat") as f:
        for line in f:
            name = line.split(None, 1)[0]
            if name.startswith("cpu") and name != "cpu":
                v = [int(x) for x in line.split()[1:9]]
                busy = v[0] + v[1] + v[2] + v[5] + v[6]   # user nice system irq softirq
                counters[name] = (busy, v[7], busy + v[3] + v[4] + v[7])
    return counters


def cpuUsage(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """
    Busy and steal % of each CPU between two L{cpuCounters} readings.
    """
    usage = {}
    for name, old in sorted(before.items()):
        new = after.get(name, old)
        total = (new[2] - old[2]) or 1
        usage[name] = {"busy_pct": round(100.0 * (new[0] - old[0]) / total, 1),
                       "steal_pct": round(100.0 * (new[1] - old[1]) / total, 1)}
    return usage


def backgroundLoad(say: Callable[..., None], seconds: float = 1.0) -> dict:
    """
    Busy % of each CPU while the script is idle: other work on the machine;
    a warning when a CPU is 10% busy or more.
    """
    before = cpuCounters()
    time.sleep(seconds)
    idle = cpuUsage(before, cpuCounters())
    busy = ", ".join("%s %.0f%%" % (n, u["busy_pct"]) for n, u in idle.items() if u["busy_pct"] >= 10)
    if busy:
        say("WARNING: the machine is busy before the run (%s): the numbers will be noisy" % busy)
    return idle


def loadavgText() -> list[str]:
    """
    The 1, 5 and 15 minute load averages as /proc/loadavg writes them.
    """
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def loadavg() -> list[float]:
    return [float(x) for x in loadavgText()]


def listeners(port: int) -> int:
    """
    How many sockets listen on 127.0.0.1:C{port} (one per relayd worker).
    """
    want = "0100007F:%04X" % port
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                n += 1
    return n


# ---------------------------------------------------------------------------
# ports, files, commands
# ---------------------------------------------------------------------------
def freePort(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def portFree(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def outputOf(argv: list[str], timeout: float = 30) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout + done.stderr).strip() or None


def writeBodies(work: str, worldReadable: bool = False) -> str:
    """
    L{BODIES} as files under C{work}/www, the folder returned; readable by
    anyone when C{worldReadable} (nginx started as root serves files as an
    unprivileged worker user).
    """
    www = os.path.join(work, "www")
    os.makedirs(www, exist_ok=True)
    for path, body in BODIES.values():
        with open(os.path.join(www, path.lstrip("/")), "wb") as f:
            f.write(body)
    if worldReadable:
        for folder in (work, www):
            os.chmod(folder, 0o755)
        for name in os.listdir(www):
            os.chmod(os.path.join(www, name), 0o644)
    return www


def parseWrkLine(out: str, mark: str) -> dict[str, float] | None:
    """
    The key=value pairs of the line starting with C{mark} that a wrk
    reporter script prints, or None when there is none.
    """
    line = next((ln for ln in out.splitlines() if ln.startswith(mark + " ")), None)
    if line is None:
        return None
    return {key: float(value) for key, _, value in (pair.partition("=") for pair in line.split()[1:])}


# ---------------------------------------------------------------------------
# relayd through relayd-target.sh
# ---------------------------------------------------------------------------
PROBE = """
import importlib, json, os, platform, sys
facts = {"interpreter": platform.python_implementation() + " " + platform.python_version()}
problems = []
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except Exception as e:
        problems.append("import %s: %s: %s" % (name, type(e).__name__, e))
        break
    if name == "twisted.scripts.twistd":
        facts["twisted"] = getattr(importlib.import_module("twisted"), "__version__", "?")
    elif name == "autobahn":
        facts["autobahn"] = getattr(module, "__version__", "?")
    elif name == "OpenSSL.SSL":
        facts["pyopenssl"] = importlib.import_module("OpenSSL").__version__
        facts["openssl"] = module.OpenSSL_version(module.OPENSSL_VERSION).decode()
    elif name == "relayd":
        facts["relayd"] = getattr(module, "__version__", "?")
        facts["relayd_source"] = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
facts["problem"] = "; ".join(problems) or None
print(json.dumps(facts))
"""


def defaultPython(python: str | None) -> str:
    """
    The interpreter that runs relayd: C{python}, else $PYTHON, else python3.
    """
    return python or os.environ.get("PYTHON") or "python3"


def checkInterpreter(python: str, modules: Sequence[str] = (), after: Sequence[str] = (),
                     advice: str = "") -> dict:
    """
    What relayd-target.sh will run with C{python}: the interpreter, Twisted,
    the relayd source it imports (with the PYTHONPATH that script sets up)
    and its git commit, and the versions of C{modules} (imported before
    relayd) and C{after} (imported after relayd.tap) that the probe knows;
    SystemExit, followed by C{advice}, when one of them does not import.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), ROOT]))
    facts: dict[str, Any]
    names = ["twisted.scripts.twistd", *modules, "relayd", "relayd.tap", *after]
    try:
        done = subprocess.run([python, "-c", PROBE] + names, capture_output=True, text=True,
                              timeout=60, env=env, cwd=tempfile.gettempdir())
    except (OSError, subprocess.SubprocessError) as e:
        facts = {"interpreter": "?", "problem": "cannot run it (%s)" % e}
    else:
        try:
            facts = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            facts = {"interpreter": "?", "problem": "its probe failed (exit %s): %s" % (
                done.returncode, done.stderr.strip()[-600:])}
    if facts.get("problem"):
        raise SystemExit("`%s` (%s) cannot run relayd: %s%s" % (
            python, facts.get("interpreter", "?"), facts["problem"], advice))
    source = facts.get("relayd_source")
    if source and os.path.isdir(source):
        facts["relayd_commit"] = outputOf(["git", "-C", source, "describe", "--always", "--dirty"])
    facts["python"] = python
    return facts


def relaydSummary(facts: dict) -> str:
    """
    "relayd VERSION from SOURCE (COMMIT), run by `PYTHON` = INTERPRETER,
    Twisted VERSION", from L{checkInterpreter}'s facts.
    """
    return "relayd %s from %s (%s), run by `%s` = %s, Twisted %s" % (
        facts.get("relayd", "?"), facts.get("relayd_source", "?"), facts.get("relayd_commit") or "no git",
        facts.get("python", "?"), facts.get("interpreter", "?"), facts.get("twisted", "?"))


def targetEnv(python: str | None = None, workers: int | None = None, configDir: str | None = None,
              dynamicToml: str | None = None) -> dict[str, str]:
    """
    The variables for relayd-target.sh that are given.
    """
    env = {}
    for name, value in (("BENCH_CONFIG_DIR", configDir), ("BENCH_DYNAMIC_TOML", dynamicToml),
                        ("PYTHON", python), ("BENCH_WORKERS", workers and str(workers))):
        if value:
            env[name] = value
    return env


def targetArgv(port: int, upstreamPort: int, relaydArgs: str) -> list[str]:
    """
    relayd-target.sh for relayd on 127.0.0.1:C{port} in front of
    127.0.0.1:C{upstreamPort}, with C{relaydArgs} (a shell-quoted string).
    """
    return [TARGET_SCRIPT, str(port), "127.0.0.1", str(upstreamPort)] + shlex.split(relaydArgs)


def harnessCommand(relaydArgs: str, prefix: Sequence[str] = ()) -> str:
    """
    relayd-target.sh as a peer-harness "--extra" command, with its
    placeholders for the port and the upstream.
    """
    return " ".join([*prefix, shlex.quote(TARGET_SCRIPT), "{port}", "{upstream_host}", "{upstream_port}"]
                    + [shlex.quote(a) for a in shlex.split(relaydArgs)])


def pinPlan(noPin: bool, sentence: str) -> tuple[tuple[int, int] | None, str]:
    """
    (load CPU, proxy CPU) or None, and C{sentence} (with the two CPU
    numbers) or why there is no pinning.
    """
    if noPin:
        return None, "off (--no-pin)"
    if not shutil.which("taskset"):
        return None, "off (taskset not found)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, "off (a single CPU is available)"
    return (cpus[0], cpus[1]), sentence % (cpus[0], cpus[1])


# ---------------------------------------------------------------------------
# options and reports
# ---------------------------------------------------------------------------
def argumentParser(prog: str, doc: str) -> argparse.ArgumentParser:
    """
    A parser whose description is the first paragraph of C{doc} and whose
    epilog is the rest.
    """
    return argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                   epilog=doc.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def addRunOptions(ap: argparse.ArgumentParser, md: str = "report",
                  startHelp: str = "seconds relayd may take to start (default 30)") -> None:
    """
    --no-pin, --json, --md, --keep and --start-timeout.
    """
    add = ap.add_argument
    add("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    add("--json", metavar="FILE", help="write the results as JSON here")
    add("--md", metavar="FILE", help="write the Markdown %s here" % md)
    add("--keep", action="store_true", help="keep the temporary work directory (configs, logs)")
    add("--start-timeout", type=float, default=30.0, help=startHelp)


def quickDefaults(args: argparse.Namespace) -> None:
    """
    --duration and --warmup when not given: 3 s and 1 s with --quick, else
    10 s and 2 s.
    """
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)


def requireAtLeastOne(ap: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1" % name.replace("_", "-"))


def dropWork(say: Callable[..., None], work: str, keep: bool) -> None:
    """
    Remove the work directory, unless C{keep}: then say where it is.
    """
    if keep:
        say("work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)


def writeOutputs(say: Callable[..., None], jsonPath: str | None, mdPath: str | None, report: dict,
                 text: str) -> None:
    """
    The report as JSON to C{jsonPath} and the Markdown C{text} to C{mdPath},
    where they are given.
    """
    if jsonPath:
        with open(jsonPath, "w") as f:
            json.dump(report, f, indent=1)
        say("wrote %s" % jsonPath)
    if mdPath:
        with open(mdPath, "w") as f:
            f.write(text)
        say("wrote %s" % mdPath)


def fmt(value: float | None, spec: str = "%.0f") -> str:
    return "-" if value is None else spec % value


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def median(rows: list[dict], key: str, exact: bool = False) -> dict:
    """
    The run with the median C{key}; with more than one, every run's value
    (rounded unless C{exact}) is kept under C{key}_all.
    """
    chosen = dict(sorted(rows, key=lambda r: r[key])[len(rows) // 2])
    if len(rows) > 1:
        chosen[key + "_all"] = [r[key] if exact else round(r[key]) for r in rows]
    return chosen


def rawStacks(path: str) -> Iterator[tuple[list[str], int]]:
    """
    The stacks of a py-spy raw (collapsed) file: (frames, innermost last;
    how many samples).
    """
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


def shares(counts: dict[str, int], busy: int, top: int | None = None) -> list[list]:
    """
    [name, % of C{busy}] for the C{top} largest C{counts}, largest first.
    """
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [[name, round(100.0 * n / busy, 1)] for name, n in ranked] if busy else []


class StackTally:
    """
    Profile samples counted by the frame they end in (self time), by that
    frame's component, and by every frame on their stack (inclusive).
    """

    def __init__(self, component: Callable[[str], str]) -> None:
        self.component = component
        self.own: dict[str, int] = {}
        self.parts: dict[str, int] = {}
        self.inclusive: dict[str, int] = {}

    def add(self, frames: list[str], n: int) -> None:
        leaf = frames[-1]
        self.own[leaf] = self.own.get(leaf, 0) + n
        part = self.component(leaf)
        self.parts[part] = self.parts.get(part, 0) + n
        for name in set(frames):
            self.inclusive[name] = self.inclusive.get(name, 0) + n

    def shares(self, busy: int, top: int, skip: Callable[[str], bool] = lambda frame: False) -> dict:
        """
        "self", "components" and "inclusive" shares of C{busy}; inclusive
        leaves out Twisted, the frames under 90% of the samples (the
        scaffolding) and those C{skip} names.
        """
        heavy = {name: n for name, n in self.inclusive.items()
                 if n < 0.9 * busy and self.component(name) != "Twisted" and not skip(name)}
        return {"self": shares(self.own, busy, top), "components": shares(self.parts, busy),
                "inclusive": shares(heavy, busy, top)}


def profileTable(profile: dict) -> list[str]:
    """
    The Markdown table of a profile summary's "self" and "inclusive" shares,
    side by side.
    """
    lines = ["| function (self) | % of busy | function (on the stack) | % of busy |", "|---|---:|---|---:|"]
    for n in range(max(len(profile["self"]), len(profile["inclusive"]))):
        a = profile["self"][n] if n < len(profile["self"]) else ("", None)
        b = profile["inclusive"][n] if n < len(profile["inclusive"]) else ("", None)
        lines.append("| %s | %s | %s | %s |" % (a[0].replace("|", "\\|"), fmt(a[1], "%.1f"),
                                              b[0].replace("|", "\\|"), fmt(b[1], "%.1f")))
    return lines
