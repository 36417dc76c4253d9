#!/usr/bin/env python3
"""TLS termination cost of relayd beside nginx and Caddy: handshakes, HTTPS, HTTP/2.

Each proxy terminates TLS with the same certificate, a self-signed EC P-256
one for localhost and 127.0.0.1 made at run time, in front of the same plain
HTTP origin (nginx with the shared harness's backend-nginx.conf when both are
there, otherwise the small asyncio origin of benchmarks/http.py), serving
GET /small (13 bytes) and GET /64k (65536 bytes). The peers get configs
written at run time from the shared harness's ones: nginx with
`listen ... ssl http2`, TLS 1.2 and 1.3, upstream keep-alive 64; Caddy with
`tls cert key`, HTTP/1.1 and HTTP/2, keep-alive 64 per host, GOMAXPROCS=1.
relayd is started by benchmarks/relayd-target.sh, with a router over TLS
(`tls = {}`) and the certificate in `[[tls.certificates]]` added to its
dynamic file (BENCH_DYNAMIC_TOML). Before measuring, every proxy must serve
that certificate (with and without SNI), both bodies byte for byte over
HTTPS, and both over HTTP/2 with ALPN h2; the TLS version, cipher and key
exchange group each one negotiates are reported.

Three phases, each cell a warm-up that is thrown away, then --repeat
measured runs (the median is kept):

handshakes: `openssl s_time -new -www /small` in --handshake-clients
    parallel processes. Each connection is a new TCP connection with a full
    TLS handshake (a new SSL object with no session: nothing to resume),
    then one HTTP/1.0 GET /small through the proxy, then the server closes.
    s_time prints one character per connection: "r" when the handshake
    resumed a session (SSL_session_reused), "*" for a full TLS 1.1+
    handshake. They are counted as they arrive, so a run also proves that
    no connection resumed. Reported: connections (handshakes) per second
    and the proxy's CPU time per handshake.
https: wrk over https on kept-alive connections (--connections), for each
    body; also wrk against the origin in plain HTTP ("direct"), the ceiling
    that the load generator and origin allow. req/s, p50/p99, proxy CPU per
    request.
h2: h2load with ALPN h2, --h2-connections connections with --h2-streams
    streams in flight on each, for each body; req/s, p50/p99 (from h2load's
    per-request log), proxy CPU per request.

CPU pinning (unless --no-pin, taskset is missing or there is one CPU): the
load generators and the origin share the first CPU, the proxy has the
second one to itself (nginx: one worker; Caddy: GOMAXPROCS=1; relayd: its
--workers processes, one by default). A run whose load-generator core was
at least 90% busy is marked: there the proxy was not what limited the rate,
so relayd/peer ratios are judged by CPU time per operation instead.

Everything this script starts runs in its own session and is stopped by
process group when it ends, fails or is interrupted. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import os
import sys

import benchlib  # beside this file, the first entry of sys.path

# benchmarks/http.py would shadow the standard library's http package for
# anything imported from here on: drop this folder from the import path.
benchlib.leaveScriptFolder()

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import ipaddress  # noqa: E402
import re  # noqa: E402
import selectors  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

from benchlib import (BODIES, HERE, SHARED_BENCH, SMALL, Children, Stop, cpuBySession,  # noqa: E402
                      cpuCounters, cpuUsage, fmt, loadavg, outputOf, ratio, tail)

HTTP_BENCH = os.path.join(HERE, "http.py")
ORIGIN_TEMPLATE = os.path.join(SHARED_BENCH, "configs", "backend-nginx.conf")

PHASES = ("handshakes", "https", "h2")
TARGETS = ("relayd", "nginx", "caddy")
PEERS = ("caddy", "nginx")
SATURATED_PCT = 90.0
WRK_MARK = "relayd-tls-wrk"

WRK_SCRIPT = r"""-- wrk reporter written by benchmarks/tls.py for one run: a single line of
-- key=value pairs that the driver parses.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("%s requests=%.0f duration_us=%.0f bytes=%.0f " ..
      "connect=%.0f read=%.0f write=%.0f timeout=%.0f status=%.0f " ..
      "p50_us=%.0f p99_us=%.0f mean_us=%.1f max_us=%.0f\n",
      "@MARK@", summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
""".replace("@MARK@", WRK_MARK)

NGINX_PROXY = """# nginx terminating TLS in front of the origin, written by benchmarks/tls.py
# for one run: the shared harness's proxy-nginx.conf with TLS and HTTP/2.
daemon off;
master_process on;
worker_processes 1;
pid {work}/proxy-nginx.pid;
error_log {work}/proxy-nginx.error.log warn;

events {{
    worker_connections 4096;
    multi_accept on;
}}

http {{
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 65s;
    # also the streams of one HTTP/2 connection (GOAWAY after that many)
    keepalive_requests 1000000;
    client_body_temp_path {work}/proxy-tmp/body;
    proxy_temp_path {work}/proxy-tmp/proxy;
    fastcgi_temp_path {work}/proxy-tmp/fastcgi;
    uwsgi_temp_path {work}/proxy-tmp/uwsgi;
    scgi_temp_path {work}/proxy-tmp/scgi;

    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        # nginx 1.22's default list leaves TLS 1.3 out
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""

CADDYFILE = """# Caddy terminating TLS in front of the origin, written by benchmarks/tls.py
# for one run: the shared harness's Caddyfile with a certificate given.
{{
\tadmin off
\tauto_https off
\tstorage file_system {work}/caddy-data
\tservers {{
\t\tprotocols h1 h2
\t}}
}}

https://:{port} {{
\tbind 127.0.0.1
\ttls {cert} {key}
\treverse_proxy 127.0.0.1:{upstream} {{
\t\ttransport http {{
\t\t\tkeepalive 65s
\t\t\tkeepalive_idle_conns 128
\t\t\tkeepalive_idle_conns_per_host 64
\t\t}}
\t}}
}}
"""

RELAYD_DYNAMIC = """
# added by benchmarks/tls.py: the same route over TLS, and its certificate
[http.routers.bench-tls]
rule = "PathPrefix(`/`)"
service = "origin"
tls = {{}}

[[tls.certificates]]
certFile = "{cert}"
keyFile = "{key}"
"""


say = benchlib.sayer("tls-bench")


def readLines(proc: subprocess.Popen, timeout: float, onLine: Callable[[str], None]) -> str:
    """
    Everything C{proc} writes to its stdout until it closes it, calling
    C{onLine} with each line as it arrives; RuntimeError after C{timeout}.
    """
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    pending = b""
    out = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("%s did not finish within %.0f s" % (proc.label, timeout))  # type: ignore[attr-defined]
            if not selector.select(min(left, 1.0)):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                out.append(text)
                onLine(text)
    if pending:
        out.append(pending.decode("utf-8", "replace"))
    return "\n".join(out)


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------
def pythonProcesses(sid: int) -> list[int]:
    """
    The interpreter processes of session C{sid} (relayd and its workers;
    not a shell or taskset that is still there).
    """
    found = []
    for pid in benchlib.sessionMembers(sid):
        try:
            exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
        except OSError:
            continue
        if exe.startswith(("python", "pypy")):
            found.append(pid)
    return found


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(pct / 100.0 * (len(values) - 1))))]


# ---------------------------------------------------------------------------
# the certificate and the HTTP(S) client used for the checks
# ---------------------------------------------------------------------------
def makeCertificate(work: str) -> dict:
    """
    A self-signed EC P-256 certificate for localhost and 127.0.0.1, valid
    for a week, with the cryptography package or else the openssl command.
    """
    certPath = os.path.join(work, "tls-cert.pem")
    keyPath = os.path.join(work, "tls-key.pem")
    try:
        import cryptography
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "7", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-addext", "extendedKeyUsage=serverAuth"],
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError("openssl req failed: %s" % done.stderr.strip()[-400:])
        madeWith = "openssl req"
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        with open(certPath, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        madeWith = "cryptography %s" % cryptography.__version__
    with open(certPath) as f:
        pem = f.read()
    der = ssl.PEM_cert_to_DER_cert(pem)
    return {"cert": certPath, "key": keyPath, "pem": pem, "sha256": hashlib.sha256(der).hexdigest(),
            "made_with": madeWith, "kind": "self-signed, EC P-256 key, ECDSA-SHA256, "
            "SAN DNS:localhost IP:127.0.0.1"}


def clientContext(cafile: str, checkName: bool) -> ssl.SSLContext:
    """
    A client context that trusts only C{cafile} and speaks HTTP/1.1.
    """
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = checkName
    context.set_alpn_protocols(["http/1.1"])
    return context


def fetch(port: int, path: str, context: ssl.SSLContext | None = None, serverName: str | None = None,
          timeout: float = 5.0) -> dict:
    """
    GET C{path} from 127.0.0.1:C{port} on a new connection, over TLS when a
    C{context} is given (with C{serverName} as SNI, none for None):
    status, body, and the TLS version, cipher and server certificate.
    """
    info: dict[str, Any] = {}
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        sock: Any = raw
        if context is not None:
            sock = context.wrap_socket(raw, server_hostname=serverName)
            info.update(version=sock.version(), cipher=sock.cipher()[0],
                        alpn=sock.selected_alpn_protocol(),
                        sha256=hashlib.sha256(sock.getpeercert(True)).hexdigest())
        try:
            host = serverName or "127.0.0.1:%d" % port
            sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            if sock is not raw:
                sock.close()
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete response head in %d bytes" % len(data))
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = dechunk(body)
    elif b"content-length" in headers:
        body = body[:int(headers[b"content-length"])]
    info.update(status=int(lines[0].split()[1]), body=body)
    return info


def dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size, _, rest = data.partition(b"\r\n")
        length = int(size.split(b";")[0], 16)
        if length == 0:
            break
        out.append(rest[:length])
        data = rest[length + 2:]
    return b"".join(out)


def bodyProblem(got: dict, want: bytes, what: str) -> str | None:
    if got["status"] == 200 and got["body"] == want:
        return None
    return "%s: status %d, %d bytes (want 200, %d bytes%s)" % (
        what, got["status"], len(got["body"]), len(want),
        ", same length but other bytes" if len(got["body"]) == len(want) else "")


def sClient(port: int, serverName: str | None, alpn: str | None, pem: str) -> dict:
    """
    One handshake with openssl s_client: the TLS version, cipher, key
    exchange group and ALPN protocol the server chose, and whether it
    served the certificate C{pem}.
    """
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    argv += ["-servername", serverName] if serverName else ["-noservername"]
    if alpn:
        argv += ["-alpn", alpn]
    try:
        done = subprocess.run(argv, input="", capture_output=True, text=True, errors="replace",
                              timeout=15)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    out = done.stdout
    found: dict[str, Any] = {}
    for key, pattern in (("version_cipher", r"^New, (\S+), Cipher is (\S+)"),
                         ("group", r"^(?:Server Temp Key|Negotiated TLS1\.3 group): (.+)$"),
                         ("alpn", r"^ALPN protocol: (\S+)"),
                         ("signature", r"^Peer signature type: (\S+)")):
        match = re.search(pattern, out, re.M)
        if match:
            found[key] = match.groups() if key == "version_cipher" else match.group(1).strip()
    served = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    result: dict[str, Any] = {
        "version": None, "cipher": None, "group": found.get("group"), "alpn": found.get("alpn"),
        "signature": found.get("signature"),
        "our_certificate": served is not None and "".join(served.group(0).split()) == "".join(pem.split())}
    if "version_cipher" in found:
        result["version"], result["cipher"] = found["version_cipher"]
    if result["version"] in (None, "(NONE)"):
        result["error"] = (done.stderr.strip().splitlines() or ["no handshake"])[-1][:300]
    return result


# ---------------------------------------------------------------------------
# set-up: origin, proxies, checks
# ---------------------------------------------------------------------------
class Bench:
    """
    What one run shares: options, children, work directory, certificate,
    CPUs, origin, and the report being filled in.
    """

    def __init__(self, args: argparse.Namespace, kids: Children, work: str) -> None:
        self.args = args
        self.kids = kids
        self.work = work
        self.cert: dict = {}
        self.cpuLoad: int | None = None
        self.cpuProxy: int | None = None
        self.origin: subprocess.Popen | None = None
        self.originPort = 0
        self.originStatus = False
        self.report: dict = {}
        self.loadSamples: list[float] = []

    def originAccepts(self) -> int | None:
        """
        TCP connections the origin nginx accepted so far (stub_status).
        """
        if not self.originStatus:
            return None
        try:
            got = fetch(self.originPort, "/__pb_status", timeout=2.0)
            return int(got["body"].split(b"\n")[2].split()[0])
        except (OSError, ValueError, IndexError):
            return None


def waitPlain(port: int, proc: subprocess.Popen, timeout: float) -> str | None:
    def check() -> str | None:
        try:
            return bodyProblem(fetch(port, "/small", timeout=2.0), SMALL, "GET /small")
        except (OSError, ValueError) as e:
            return str(e) or type(e).__name__
    return benchlib.waitReady(proc, timeout, check)


def startOrigin(bench: Bench) -> str:
    """
    The origin on the load CPU: nginx with the shared harness's config when
    nginx and that file are there, else the asyncio origin of http.py.
    """
    args, work = bench.args, bench.work
    port = benchlib.freePort()
    useNginx = args.origin in ("auto", "nginx") and shutil.which("nginx") and os.path.exists(ORIGIN_TEMPLATE)
    if args.origin == "nginx" and not useNginx:
        raise SystemExit("--origin nginx: nginx or %s is missing" % ORIGIN_TEMPLATE)
    benchlib.writeBodies(work, worldReadable=bool(useNginx))
    if useNginx:
        os.makedirs(os.path.join(work, "backend-tmp"), exist_ok=True)
        with open(ORIGIN_TEMPLATE) as f:
            text = f.read().replace("@@WORKDIR@@", work).replace("@@BACKEND_PORT@@", str(port))
        conf = os.path.join(work, "origin-nginx.conf")
        with open(conf, "w") as f:
            f.write(text)
        proc = bench.kids.spawn("origin (nginx)", ["nginx", "-p", work + "/", "-e",
                                                   os.path.join(work, "backend-nginx.error.log"), "-c", conf],
                                cpu=bench.cpuLoad, logfile=os.path.join(work, "origin.log"))
        problem = waitPlain(port, proc, 15)
        if problem is None:
            bench.origin, bench.originPort, bench.originStatus = proc, port, True
            version = (outputOf(["nginx", "-v"]) or "nginx").split(":", 1)[-1].strip()
            return "%s with the shared harness's backend-nginx.conf (1 worker, keep-alive), 127.0.0.1:%d" % (
                version, port)
        bench.kids.stop(proc)
        if args.origin == "nginx":
            raise RuntimeError("origin nginx %s:\n%s" % (problem, tail(os.path.join(work, "backend-nginx.error.log"))))
        say("origin nginx %s; the asyncio origin of http.py instead" % problem)
        port = benchlib.freePort()
    proc = bench.kids.spawn("origin (python)", [sys.executable, HTTP_BENCH, "--serve-origin", str(port)],
                            cpu=bench.cpuLoad, logfile=os.path.join(work, "origin.log"))
    problem = waitPlain(port, proc, 15)
    if problem:
        raise RuntimeError("the asyncio origin %s:\n%s" % (problem, tail(os.path.join(work, "origin.log"))))
    bench.origin, bench.originPort = proc, port
    return ("the asyncio origin of benchmarks/http.py (%s %s, 1 process, keep-alive; slower than "
            "nginx, so the direct ceiling is lower), 127.0.0.1:%d" % (
                sys.implementation.name, sys.version.split()[0], port))


def startTarget(bench: Bench, name: str) -> dict:
    """
    Start one TLS-terminating proxy on the proxy CPU; a dict with its
    process, port, log, command and version.
    """
    args, work = bench.args, bench.work
    port = benchlib.freePort()
    log = os.path.join(work, "%s.log" % name)
    cert, key = bench.cert["cert"], bench.cert["key"]
    env: dict[str, str] = {}
    if name == "relayd":
        env = benchlib.targetEnv(args.python, args.workers, os.path.join(work, "relayd"),
                                 RELAYD_DYNAMIC.format(cert=cert, key=key))
        argv = benchlib.targetArgv(port, bench.originPort, args.relayd_args)
        facts = bench.report["relayd"]
        version = "relayd %s (%s) on %s, Twisted %s, pyOpenSSL %s, %s%s" % (
            facts.get("relayd", "?"), facts.get("relayd_commit") or "no git", facts.get("interpreter", "?"),
            facts.get("twisted", "?"), facts.get("pyopenssl", "?"), facts.get("openssl", "?"),
            ", workers = %d" % args.workers if args.workers else "")
    elif name == "nginx":
        os.makedirs(os.path.join(work, "proxy-tmp"), exist_ok=True)
        conf = os.path.join(work, "proxy-nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_PROXY.format(work=work, port=port, upstream=bench.originPort, cert=cert, key=key))
        argv = ["nginx", "-p", work + "/", "-e", os.path.join(work, "proxy-nginx.error.log"), "-c", conf]
        version = ((outputOf(["nginx", "-v"]) or "nginx").split(":", 1)[-1].strip()
                   + ", 1 worker, upstream keepalive 64, " + nginxOpenSSL())
    else:
        os.makedirs(os.path.join(work, "caddy-data"), exist_ok=True)
        conf = os.path.join(work, "Caddyfile")
        with open(conf, "w") as f:
            f.write(CADDYFILE.format(work=work, port=port, upstream=bench.originPort, cert=cert, key=key))
        argv = ["caddy", "run", "--adapter", "caddyfile", "--config", conf]
        env = {"GOMAXPROCS": "1", "HOME": work, "XDG_CONFIG_HOME": os.path.join(work, "xdg-config"),
               "XDG_DATA_HOME": os.path.join(work, "xdg-data")}
        version = "caddy %s, GOMAXPROCS=1, keepalive_idle_conns_per_host 64" % (
            (outputOf(["caddy", "version"]) or "?").split()[0])
    proc = bench.kids.spawn(name, argv, cpu=bench.cpuProxy, env=env, logfile=log)
    return {"name": name, "proc": proc, "port": port, "log": log, "version": version,
            "command": " ".join(map(shlex.quote, argv))}


def nginxOpenSSL() -> str:
    found = re.search(r"running with (OpenSSL \S+)|built with (OpenSSL \S+)", outputOf(["nginx", "-V"]) or "")
    return (found.group(1) or found.group(2)) if found else "OpenSSL ?"


def waitTLS(bench: Bench, target: dict) -> str | None:
    """
    Until GET /small answers over TLS; None or what went wrong (for relayd,
    whether it answers plain HTTP on the same port, and its log).
    """
    proc, port = target["proc"], target["port"]
    context = clientContext(bench.cert["cert"], checkName=False)
    deadline = time.monotonic() + bench.args.start_timeout
    last: str | None = "nothing listening"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = "exited with status %s" % proc.returncode
            break
        if benchlib.listeners(port):
            try:
                got = fetch(port, "/small", context, None, timeout=3.0)
                last = bodyProblem(got, SMALL, "GET /small over TLS")
                if last is None:
                    return None
            except (OSError, ValueError) as e:
                last = "GET /small over TLS: %s" % (str(e) or type(e).__name__)
        time.sleep(0.3)
    if proc.poll() is not None:
        problem = "%s %s before serving HTTPS" % (target["name"], last)
    else:
        problem = "%s does not serve HTTPS after %gs: %s" % (target["name"], bench.args.start_timeout, last)
    if proc.poll() is None and benchlib.listeners(port):
        try:
            plain = fetch(port, "/small", timeout=3.0)
            problem += "; plain HTTP on the same port: %s" % (
                bodyProblem(plain, SMALL, "GET /small") or "works")
        except (OSError, ValueError) as e:
            problem += "; plain HTTP on the same port fails too (%s)" % (str(e) or type(e).__name__)
    return problem


def checkTarget(bench: Bench, target: dict) -> dict:
    """
    What a proxy serves before it is measured: the certificate with each
    kind of SNI the clients send (s_time and h2load: none, wrk: the
    address, a browser: the name), both bodies over HTTPS and over HTTP/2,
    and what TLS it negotiates. Problems go to "problems"; the phases a
    problem rules out go to "skip".
    """
    port, cert = target["port"], bench.cert
    problems: list[str] = []
    skip: set[str] = set()
    tls: dict = {}
    for label, serverName, checkName in (("SNI localhost", "localhost", True), ("no SNI", None, False)):
        context = clientContext(cert["cert"], checkName)
        for body in BODIES:
            path, want = BODIES[body]
            try:
                got = fetch(port, path, context, serverName)
            except (OSError, ValueError) as e:
                problems.append("HTTPS GET %s (%s): %s" % (path, label, str(e) or type(e).__name__))
                skip.update(("handshakes", "https"))
                continue
            tls.setdefault(label, {"version": got["version"], "cipher": got["cipher"]})
            problem = bodyProblem(got, want, "HTTPS GET %s (%s)" % (path, label))
            if problem:
                problems.append(problem)
                skip.update(("handshakes", "https"))
    for label, serverName, alpn in (("s_time, h2load: no SNI", None, "h2,http/1.1"),
                                    ("wrk: SNI 127.0.0.1", "127.0.0.1", None)):
        probe = sClient(port, serverName, alpn, cert["pem"])
        tls[label] = probe
        if probe.get("error"):
            problems.append("openssl s_client (%s): %s" % (label, probe["error"]))
        elif not probe["our_certificate"]:
            problems.append("%s: served a certificate other than the configured one" % label)
        if probe.get("version") and probe["version"] != "TLSv1.3":
            problems.append("%s: negotiated %s, not TLS 1.3" % (label, probe["version"]))
    if tls.get("s_time, h2load: no SNI", {}).get("alpn") != "h2":
        problems.append("ALPN: offered h2,http/1.1, the server chose %s" % (
            tls.get("s_time, h2load: no SNI", {}).get("alpn") or "nothing"))
        skip.add("h2")
    if shutil.which("h2load") and "h2" not in skip:
        for body in BODIES:
            path, want = BODIES[body]
            problem = h2Check(port, path, len(want))
            if problem:
                problems.append(problem)
                skip.add("h2")
    return {"problems": problems, "skip": sorted(skip), "tls": tls}


def h2Check(port: int, path: str, size: int, count: int = 20) -> str | None:
    """
    C{count} GETs over one HTTP/2 connection with h2load: all must succeed
    and bring exactly C{size} bytes of data each.
    """
    try:
        done = subprocess.run(["h2load", "-n", str(count), "-c", "1", "-m", "4",
                               "https://127.0.0.1:%d%s" % (port, path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return "h2load GET %s: %s" % (path, e)
    out = done.stdout
    proto = re.search(r"Application protocol: (\S+)", out)
    ok = re.search(r"(\d+) succeeded", out)
    data = re.search(r"traffic: .* \((\d+)\) data", out)
    if not proto or proto.group(1) != "h2":
        return "h2load GET %s: protocol %s" % (path, proto.group(1) if proto else "none")
    if not ok or int(ok.group(1)) != count:
        return "h2load GET %s: %s of %d succeeded" % (path, ok.group(1) if ok else "none", count)
    if not data or int(data.group(1)) != count * size:
        return "h2load GET %s: %s bytes of data, want %d" % (path, data.group(1) if data else "?", count * size)
    return None


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------
class Snapshot:
    """
    Counters read at one instant: CPU by session and per CPU, the origin's
    accepted connections.
    """

    def __init__(self, bench: Bench, proxy: subprocess.Popen | None, clients: list[subprocess.Popen],
                 counts: dict | None = None) -> None:
        self.t = time.monotonic()
        self.bySession = bySession = cpuBySession()
        self.ownCpu = sum(os.times()[:2])
        # the sessions this script started, and the kernel's threads
        self.mine = {0} | {p.pid for p in clients}
        for proc in (proxy, bench.origin):
            if proc is not None:
                self.mine.add(proc.pid)
        self.proxyCpu: float | None = bySession.get(proxy.pid, 0.0) if proxy is not None else None
        self.originCpu = bySession.get(bench.origin.pid, 0.0) if bench.origin is not None else 0.0
        self.clientCpu = {p.pid: bySession.get(p.pid, 0.0) for p in clients}
        self.cpus = cpuCounters()
        self.accepts = bench.originAccepts()
        self.counts = dict(counts or {})


def window(bench: Bench, a: Snapshot, b: Snapshot, operations: float) -> dict:
    """
    What happened between two snapshots: proxy, origin and client CPU, per
    CPU busy %, connections the origin accepted.
    """
    wall = b.t - a.t
    usage = cpuUsage(a.cpus, b.cpus)
    clientCpu = sum(b.clientCpu[pid] - a.clientCpu[pid] for pid in b.clientCpu if pid in a.clientCpu)
    # processes of the sessions this script did not start, except itself and
    # the kernel's threads: others' work, which shares the CPUs
    others = sum(used - a.bySession[sid] for sid, used in b.bySession.items()
                 if sid in a.bySession and sid not in a.mine | b.mine)
    others = max(0.0, others - (b.ownCpu - a.ownCpu))
    row: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "cpus": usage,
        "client_cpu_pct": round(100.0 * clientCpu / wall, 1),
        "others_cpu_pct": round(100.0 * others / wall, 1),
        "origin_cpu_pct": round(100.0 * (b.originCpu - a.originCpu) / wall, 1),
        "origin_conns_opened": (b.accepts - a.accepts - 1) if a.accepts is not None and b.accepts is not None
        else None,
        "loadavg_1min": loadavg()[0],
    }
    bench.loadSamples.append(row["loadavg_1min"])
    if bench.cpuLoad is not None:
        row["load_core_busy_pct"] = usage.get("cpu%d" % bench.cpuLoad, {}).get("busy_pct")
    if bench.cpuProxy is not None:
        row["proxy_core_busy_pct"] = usage.get("cpu%d" % bench.cpuProxy, {}).get("busy_pct")
    if a.proxyCpu is not None and b.proxyCpu is not None:
        used = b.proxyCpu - a.proxyCpu
        row["proxy_cpu_s"] = round(used, 3)
        row["proxy_cpu_pct"] = round(100.0 * used / wall, 1)
        row["proxy_us_per_op"] = 1e6 * used / operations if operations else None
    return row


def measureHandshakes(bench: Bench, target: dict) -> dict:
    """
    openssl s_time -new in parallel processes for a warm-up, then
    --repeat windows of --duration seconds, counting the connections (full
    handshakes "*", resumed ones "r") each process reports as it goes.
    """
    args = bench.args
    proxy = target["proc"]
    seconds = args.warmup + args.repeat * args.duration + 60
    argv = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % target["port"], "-new",
            "-www", BODIES["small"][0], "-time", str(seconds)]
    log = os.path.join(bench.work, "s_time.log")
    states: list[dict] = []
    live: dict[int, dict] = {}
    restarts = 0
    selector = selectors.DefaultSelector()

    def launch() -> None:
        proc = bench.kids.spawn("s_time", argv, cpu=bench.cpuLoad, stdout=subprocess.PIPE,
                                logfile=log, quiet=True)
        state = {"proc": proc, "head": b"", "started": False, "ended": False,
                 "full": 0, "resumed": 0, "other": 0}
        states.append(state)
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        live[fd] = state
        selector.register(fd, selectors.EVENT_READ)

    def feed(state: dict, chunk: bytes) -> None:
        # The first line is s_time's "Collecting connection statistics ...";
        # then one character per connection until the closing statistics.
        if not state["started"]:
            state["head"] += chunk
            if b"\n" not in state["head"]:
                return
            chunk = state["head"].split(b"\n", 1)[1]
            state["started"] = True
        if state["ended"]:
            return
        end = chunk.find(b"\n")
        if end >= 0:
            chunk = chunk[:end]
            state["ended"] = True
        full, resumed = chunk.count(b"*"), chunk.count(b"r")
        state["full"] += full
        state["resumed"] += resumed
        state["other"] += len(chunk) - full - resumed

    def counts() -> dict:
        return {key: sum(s[key] for s in states) for key in ("full", "resumed", "other")}

    def snap() -> Snapshot:
        return Snapshot(bench, proxy, [s["proc"] for s in live.values()], dict(counts(), restarts=restarts))

    snaps: list[Snapshot] = []
    try:
        for _ in range(args.handshake_clients):
            launch()
        began = time.monotonic()
        marks = [began + args.warmup + n * args.duration for n in range(args.repeat + 1)]
        while marks:
            left = marks[0] - time.monotonic()
            if left <= 0:
                snaps.append(snap())
                marks.pop(0)
                continue
            for key, _ in selector.select(min(left, 0.5)):
                state = live[key.fd]
                chunk = os.read(key.fd, 65536)
                if chunk:
                    feed(state, chunk)
                    continue
                # s_time gives up at its first failed connection: replace it
                selector.unregister(key.fd)
                del live[key.fd]
                bench.kids.stop(state["proc"], grace=1.0, quiet=True)
                restarts += 1
                if proxy.poll() is not None:
                    raise RuntimeError("%s exited during the handshakes (status %s)" % (
                        target["name"], proxy.returncode))
                if restarts > 5 * args.handshake_clients:
                    raise RuntimeError("s_time clients keep failing (%d restarts); the last errors:\n%s" % (
                        restarts, tail(log, 8)))
                launch()
    finally:
        for state in live.values():
            bench.kids.stop(state["proc"], grace=1.0, quiet=True)
        selector.close()
    if restarts:
        say("  %d s_time client(s) restarted after a failed connection: %s" % (
            restarts, tail(log, 2).strip().replace("\n", " | ")[:300]))
    runs = []
    for a, b in zip(snaps, snaps[1:]):
        done = {key: b.counts[key] - a.counts[key] for key in ("full", "resumed", "other")}
        connections = sum(done.values())
        row = window(bench, a, b, connections)
        row.update(rate=connections / row["wall_s"], connections=connections, full=done["full"],
                   resumed=done["resumed"], other=done["other"],
                   client_restarts=b.counts["restarts"] - a.counts["restarts"],
                   mean_ms=(1000.0 * args.handshake_clients * row["wall_s"] / connections) if connections else None)
        runs.append(row)
    return benchlib.median(runs, "rate")


def runWrk(bench: Bench, url: str, seconds: int) -> dict:
    argv = ["wrk", "-t1", "-c%d" % bench.args.connections, "-d%ds" % seconds,
            "--timeout", "%ds" % bench.args.wrk_timeout, "-s", os.path.join(bench.work, "report.lua"), url]
    proc = bench.kids.spawn("wrk", argv, cpu=bench.cpuLoad, stdout=subprocess.PIPE, quiet=True,
                            logfile=os.path.join(bench.work, "wrk.log"))
    try:
        out = readLines(proc, seconds + bench.args.wrk_timeout + 30, lambda line: None)
    finally:
        bench.kids.stop(proc, grace=1.0, quiet=True)
    values = benchlib.parseWrkLine(out, WRK_MARK)
    if values is None:
        raise RuntimeError("wrk printed no result (exit %s): %s %s" % (
            proc.returncode, out[-300:], tail(os.path.join(bench.work, "wrk.log"), 5)))
    return values


def measureWrk(bench: Bench, target: dict | None, url: str) -> dict:
    """
    wrk for a warm-up that is thrown away, then --repeat measured runs.
    """
    args = bench.args
    proxy = target["proc"] if target is not None else None
    name = target["name"] if target is not None else "direct"
    if args.warmup > 0:
        runWrk(bench, url, args.warmup)
    runs = []
    for _ in range(args.repeat):
        a = Snapshot(bench, proxy, [])
        w = runWrk(bench, url, args.duration)
        b = Snapshot(bench, proxy, [])
        row = window(bench, a, b, w["requests"])
        seconds = w["duration_us"] / 1e6 or row["wall_s"]
        row.update(rate=w["requests"] / seconds, requests=int(w["requests"]),
                   mb_per_s=w["bytes"] / seconds / 1e6,
                   p50_ms=w["p50_us"] / 1000.0, p99_ms=w["p99_us"] / 1000.0, max_ms=w["max_us"] / 1000.0,
                   socket_errors=int(w["connect"] + w["read"] + w["write"] + w["timeout"]),
                   http_errors=int(w["status"]))
        runs.append(row)
        if proxy is not None and proxy.poll() is not None:
            raise RuntimeError("%s exited during the run (status %s)" % (name, proxy.returncode))
    return benchlib.median(runs, "rate")


def measureH2(bench: Bench, target: dict, path: str) -> dict:
    """
    --repeat h2load runs, each with its own warm-up (h2load's
    --warm-up-time, not counted); CPU is read when h2load says its measured
    period starts and ends.
    """
    args = bench.args
    proxy = target["proc"]
    runs = []
    for n in range(args.repeat):
        logFile = os.path.join(bench.work, "h2load-requests.tsv")
        argv = ["h2load", "-t", "1", "-c", str(args.h2_connections), "-m", str(args.h2_streams),
                "-D", str(args.duration), "--log-file", logFile]
        if args.warmup > 0:
            argv += ["--warm-up-time", str(args.warmup)]
        argv.append("https://127.0.0.1:%d%s" % (target["port"], path))
        marks: dict[str, Snapshot] = {}

        def onLine(line: str) -> None:
            if line.startswith("Main benchmark duration is started"):
                marks["start"] = Snapshot(bench, proxy, [proc])
            elif line.startswith("Main benchmark duration is over"):
                marks["end"] = Snapshot(bench, proxy, [proc])

        proc = bench.kids.spawn("h2load", argv, cpu=bench.cpuLoad, stdout=subprocess.PIPE, quiet=True,
                                logfile=os.path.join(bench.work, "h2load.log"))
        try:
            out = readLines(proc, args.warmup + args.duration + 60, onLine)
            proc.wait(timeout=30)   # its request log is complete once it exits
        finally:
            bench.kids.stop(proc, grace=1.0, quiet=True)
        done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        rate = re.search(r"finished in \S+, ([\d.]+) req/s", out)
        if not done or not rate or "start" not in marks or "end" not in marks:
            raise RuntimeError("h2load gave no result (exit %s): %s" % (proc.returncode, out[-500:]))
        succeeded = int(done.group(4))
        # One line per request: start, status, microseconds to the end of
        # the response. Status -1 is a failed stream, 0 one that h2load cut
        # off when the measured period ended: neither has a latency.
        latencies = []
        odd: dict[str, int] = {}
        cut = 0
        with open(logFile) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) < 3 or fields[1] == "-1":
                    continue
                if fields[1] == "0":
                    cut += 1
                    continue
                latencies.append(int(fields[2]) / 1000.0)
                if not fields[1].startswith("2"):
                    odd[fields[1]] = odd.get(fields[1], 0) + 1
        os.unlink(logFile)
        row = window(bench, marks["start"], marks["end"], succeeded)
        row.update(rate=float(rate.group(1)), requests=succeeded,
                   failed=int(done.group(5)) + int(done.group(6)) + int(done.group(7)),
                   p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                   max_ms=max(latencies) if latencies else None)
        row["non_2xx"] = sum(odd.values())
        row["non_2xx_statuses"] = odd
        row["cut_at_end"] = cut
        runs.append(row)
        if proxy.poll() is not None:
            raise RuntimeError("%s exited during the run (status %s)" % (target["name"], proxy.returncode))
    return benchlib.median(runs, "rate")


# ---------------------------------------------------------------------------
# profiling relayd
# ---------------------------------------------------------------------------
def profileRelayd(bench: Bench, target: dict, phases: list[str]) -> None:
    """
    One extra, unmeasured run per phase (small body) sampled with py-spy
    --native (on the load CPU): where relayd's time goes, down to OpenSSL's
    C functions.
    """
    args = bench.args
    if not shutil.which("py-spy"):
        say("--profile: py-spy is not installed; skipped")
        return
    os.makedirs(args.profile, exist_ok=True)
    pids = pythonProcesses(target["proc"].pid)
    if not pids:
        say("--profile: no relayd interpreter process found; skipped")
        return
    seconds = max(3, min(args.duration, 10))
    port = target["port"]
    for phase in phases:
        if phase == "handshakes":
            loads = [["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new", "-www", "/small",
                      "-time", str(seconds + 20)]] * args.handshake_clients
        elif phase == "https":
            loads = [["wrk", "-t1", "-c%d" % args.connections, "-d%ds" % (seconds + 20),
                      "https://127.0.0.1:%d/small" % port]]
        else:
            loads = [["h2load", "-t", "1", "-c", str(args.h2_connections), "-m", str(args.h2_streams),
                      "-D", str(seconds + 20), "https://127.0.0.1:%d/small" % port]]
        raw = os.path.abspath(os.path.join(args.profile, "relayd-tls-%s.txt" % phase))
        say("profiling relayd (pid %d) for %d s under the %s load" % (pids[0], seconds, phase))
        procs = [bench.kids.spawn("%s load (profiled run)" % phase, argv, cpu=bench.cpuLoad, quiet=True)
                 for argv in loads]
        try:
            time.sleep(2.0)
            before = cpuBySession().get(target["proc"].pid, 0.0)
            began = time.monotonic()
            spy = ["py-spy", "record", "--pid", str(pids[0]), "--duration", str(seconds), "--rate", "200",
                   "--format", "raw", "--native", "--output", raw]
            done = subprocess.run(benchlib.pinned(spy, bench.cpuLoad), capture_output=True, text=True, timeout=seconds + 60)
            cpuPct = 100.0 * (cpuBySession().get(target["proc"].pid, 0.0) - before) / (time.monotonic() - began)
        finally:
            for proc in procs:
                bench.kids.stop(proc, grace=1.0, quiet=True)
        if done.returncode != 0 or not os.path.exists(raw):
            say("py-spy failed: %s" % done.stderr.strip()[-400:])
            continue
        bench.report["profiles"][phase] = dict(profileSummary(raw), raw=raw, relayd_cpu_pct=round(cpuPct))


def profileSummary(path: str, top: int = 15) -> dict:
    """
    Sample shares from py-spy's raw stacks (with native frames). py-spy
    leaves out the samples where relayd waits (in epoll); those whose
    innermost Python frame is the reactor's poll are left out too. For the
    rest: the layer each sample belongs to (its innermost Python frame, with
    the C code it called: the OpenSSL handshake, pyOpenSSL's record reads
    and writes, Twisted's TLS layer, h2, relayd, ...), self time by
    component, self time per function, and the functions outside Twisted
    most often on the stack.
    """
    tally = benchlib.StackTally(component)
    layers: dict[str, int] = {}
    total = idle = 0
    for stack, n in benchlib.rawStacks(path):
        total += n
        frames = [shortFrame(x) for x in stack]
        python = [x for x in frames if ".py)" in x]
        if python and python[-1].startswith("EPollReactor.doPoll "):
            idle += n
            continue
        tally.add(frames, n)
        layer = layerOf(frames, python[-1] if python else "")
        layers[layer] = layers.get(layer, 0) + n
    busy = total - idle
    return dict({"samples": total, "idle": idle, "busy": busy, "layers": benchlib.shares(layers, busy)},
                **tally.shares(busy, top, skip=lambda frame: frame.startswith("0x")))


def layerOf(frames: list[str], innermost: str) -> str:
    """
    Who a sample's time is for, from its innermost Python frame and
    anything on the stack that marks a TLS handshake.
    """
    if any(x.startswith("Connection.do_handshake (OpenSSL/") for x in frames):
        return "TLS handshake (OpenSSL, via pyOpenSSL's do_handshake)"
    where = innermost.rpartition(" (")[2]
    for prefix, name in (("OpenSSL/", "TLS records and connection set-up (pyOpenSSL and OpenSSL)"),
                         ("relayd/tls/", "relayd's certificate and context choice"),
                         ("twisted/protocols/tls.py", "Twisted's TLS layer (TLSMemoryBIOProtocol)"),
                         ("h2/", "HTTP/2 library (h2, hpack, hyperframe)"),
                         ("hpack/", "HTTP/2 library (h2, hpack, hyperframe)"),
                         ("hyperframe/", "HTTP/2 library (h2, hpack, hyperframe)"),
                         ("relayd/", "relayd (routing, HTTP, upstream)"),
                         ("<attrs generated methods relayd", "relayd (routing, HTTP, upstream)"),
                         ("twisted/", "Twisted (reactor, TCP)"),
                         ("interface/", "zope.interface")):
        if where.startswith(prefix):
            return name
    return "other (standard library, interpreter)"


# What py-spy's shortened Python file names start with, by package.
PACKAGES = (("relayd/", "relayd"), ("<attrs generated methods relayd", "relayd"), ("twisted/", "Twisted"),
            ("OpenSSL/", "pyOpenSSL"), ("cryptography/", "cryptography (Python)"), ("h2/", "h2"),
            ("hpack/", "h2"), ("hyperframe/", "h2"), ("interface/", "zope.interface"))


def component(frame: str) -> str:
    where = frame.rpartition(" (")[2].rstrip(")")
    if where.endswith(".py"):
        for prefix, name in PACKAGES:
            if where.startswith(prefix):
                return name
        module = where.split("/", 1)[0].rsplit(".", 1)[0]
        return "standard library" if module in sys.stdlib_module_names else module
    for mark, name in (("_rust", "OpenSSL (cryptography's build)"), ("libssl", "OpenSSL"),
                       ("libcrypto", "OpenSSL"), ("libc.so", "libc and system calls"),
                       ("[vdso]", "libc and system calls"), ("ld-linux", "libc and system calls"),
                       ("_zope_interface", "zope.interface"), ("python", "CPython interpreter"),
                       ("_cffi", "cffi")):
        if mark in where:
            return name
    for prefix, name in PACKAGES:
        if where.startswith(prefix):
            return name
    if re.search(r"\.(c|h|c\.h)$", where):
        return "CPython interpreter"   # the C code of the interpreter and its modules
    return where or "other native code"


def shortFrame(text: str) -> str:
    """
    "dataReceived (relayd/proxy/h2.py)": the function and the file py-spy
    names (a package-relative path, a C source file or a library), without
    the line number.
    """
    name, _, where = text.partition(" (")
    where = where[:-1] if where.endswith(")") else where
    if re.search(r":\d+$", where):
        where = where.rsplit(":", 1)[0]
    return "%s (%s)" % (name, os.path.basename(where) if where.startswith("/") else where) if where else name


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------
def checkInterpreter(python: str) -> dict:
    """
    What relayd-target.sh will run (interpreter, Twisted, pyOpenSSL and its
    OpenSSL, the relayd source it imports), or SystemExit when it cannot
    run relayd.
    """
    return benchlib.checkInterpreter(python, ("OpenSSL.SSL",))


def toolVersions() -> dict:
    versions = {}
    for name, argv, pattern in (("openssl", ["openssl", "version"], r"OpenSSL \S+"),
                                ("wrk", ["wrk", "-v"], r"wrk \S+"),
                                ("h2load", ["h2load", "--version"], r"nghttp2/\S+")):
        if shutil.which(argv[0]):
            found = re.search(pattern, outputOf(argv) or "")
            versions[name] = found.group(0) if found else "?"
    return versions


def runTarget(bench: Bench, name: str, phases: list[str]) -> None:
    """
    Start one proxy, check it, measure the phases it can serve, stop it.
    """
    args, report = bench.args, bench.report
    entry: dict[str, Any] = report["targets"].setdefault(name, {})
    target = startTarget(bench, name)
    entry.update(port=target["port"], version=target["version"], command=target["command"])
    try:
        problem = waitTLS(bench, target)
        if problem:
            entry["error"] = problem
            entry["log_tail"] = tail(target["log"], 40)
            say("%s FAILED: %s" % (name, problem))
            return
        checked = checkTarget(bench, target)
        entry.update(checked)
        for problem in checked["problems"]:
            say("%s: %s" % (name, problem))
        if name == "relayd":
            entry["rss_kib_at_start"] = benchlib.sessionRssKib(target["proc"].pid)[0]
        for phase in phases:
            if phase in checked["skip"]:
                continue
            if phase == "handshakes":
                say("%s handshakes: %d s_time clients, %ds warm-up, %d x %ds" % (
                    name, args.handshake_clients, args.warmup, args.repeat, args.duration))
                row = measureHandshakes(bench, target)
                row.update(target=name)
                report["handshakes"].append(row)
                say("  %.0f handshakes/s (%d full, %d resumed), %s µs of %s CPU each" % (
                    row["rate"], row["full"], row["resumed"], fmt(row.get("proxy_us_per_op")), name))
                continue
            for body in args.bodies:
                path = BODIES[body][0]
                say("%s %s %s: %ds warm-up, %d x %ds" % (name, phase, body, args.warmup, args.repeat, args.duration))
                if phase == "https":
                    row = measureWrk(bench, target, "https://127.0.0.1:%d%s" % (target["port"], path))
                else:
                    row = measureH2(bench, target, path)
                row.update(target=name, body=body)
                report[phase].append(row)
                say("  %.0f req/s, p50 %s ms, p99 %s ms, %s µs of %s CPU per request" % (
                    row["rate"], fmt(row.get("p50_ms"), "%.2f"), fmt(row.get("p99_ms"), "%.2f"),
                    fmt(row.get("proxy_us_per_op")), name))
        if name == "relayd":
            entry["rss_kib_at_end"] = benchlib.sessionRssKib(target["proc"].pid)[0]
            if args.profile:
                profileRelayd(bench, target, [p for p in phases if p not in checked["skip"]])
        entry["log_tail"] = tail(target["log"], 10)
    except RuntimeError as e:
        entry["error"] = str(e)
        entry["log_tail"] = tail(target["log"], 40)
        say("%s FAILED: %s" % (name, e))
    finally:
        bench.kids.stop(target["proc"])


def run(bench: Bench) -> int:
    args, report = bench.args, bench.report
    pins, pinText = benchlib.pinPlan(
        args.no_pin, "load generators and origin on CPU %d, the proxy alone on CPU %d")
    if pins:
        bench.cpuLoad, bench.cpuProxy = pins
    report["config"].update(pinning=pinText, load_cpu=bench.cpuLoad, proxy_cpu=bench.cpuProxy)
    bench.cert = makeCertificate(bench.work)
    report["certificate"] = {k: bench.cert[k] for k in ("kind", "made_with", "sha256")}
    with open(os.path.join(bench.work, "report.lua"), "w") as f:
        f.write(WRK_SCRIPT)
    report["origin"] = startOrigin(bench)
    say("origin: %s" % report["origin"])

    phases = list(args.only)
    tools = {"handshakes": "openssl", "https": "wrk", "h2": "h2load"}
    for phase in list(phases):
        if not shutil.which(tools[phase]):
            report["notes"].append("%s is not installed: no %s phase" % (tools[phase], phase))
            phases.remove(phase)
    targets = []
    for name in args.targets:
        binary = {"relayd": None, "nginx": "nginx", "caddy": "caddy"}[name]
        if binary and not shutil.which(binary):
            report["notes"].append("%s is not installed: relayd is measured without it" % name)
            continue
        targets.append(name)
    for note in report["notes"]:
        say(note)
    if "https" in phases:
        for body in args.bodies:
            say("direct (plain HTTP to the origin) %s: %ds warm-up, %d x %ds" % (
                body, args.warmup, args.repeat, args.duration))
            row = measureWrk(bench, None, "http://127.0.0.1:%d%s" % (bench.originPort, BODIES[body][0]))
            row.update(target="direct (plain HTTP)", body=body)
            report["https"].append(row)
            say("  %.0f req/s" % row["rate"])
    for name in targets:
        runTarget(bench, name, phases)
    failed = [n for n in targets if report["targets"].get(n, {}).get("error")]
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
def notes(row: dict) -> str:
    out = []
    if row.get("load_core_busy_pct") is not None and row["load_core_busy_pct"] >= SATURATED_PCT:
        out.append("load core saturated")
    if row.get("proxy_cpu_pct") is not None and row["proxy_cpu_pct"] >= SATURATED_PCT:
        out.append("proxy core saturated")
    if (row.get("proxy_core_busy_pct") is not None and row.get("proxy_cpu_pct") is not None
            and row["proxy_core_busy_pct"] - row["proxy_cpu_pct"] >= 15):
        out.append("other work on the proxy core (%.0f%% busy)" % row["proxy_core_busy_pct"])
    if (row.get("others_cpu_pct") or 0) >= 10:
        out.append("other processes used %.0f%% of a core" % row["others_cpu_pct"])
    steal = max([u.get("steal_pct", 0) for u in row.get("cpus", {}).values()] or [0])
    if steal >= 10:
        out.append("%.0f%% stolen by the hypervisor" % steal)
    if row.get("rate_all"):
        out.append("runs " + "/".join(str(v) for v in row["rate_all"]))
    return "; ".join(out)


def markdown(report: dict) -> str:
    c = report["config"]
    r = report.get("relayd", {})
    m = report["machine"]
    others = [row["others_cpu_pct"] for phase in PHASES for row in report[phase] if "others_cpu_pct" in row]
    lines = [
        "## relayd TLS benchmark", "",
        "* %s, pyOpenSSL %s with %s%s" % (
            benchlib.relaydSummary(r), r.get("pyopenssl", "?"), r.get("openssl", "?"), ", workers = %d" % c["workers"] if c.get("workers") else ""),
        "* certificate: %s (made with %s)" % (report.get("certificate", {}).get("kind", "?"),
                                              report.get("certificate", {}).get("made_with", "?")),
        "* origin: %s" % report.get("origin", "?"),
        "* tools: %s" % ", ".join("%s" % v for v in report.get("tools", {}).values()),
        "* CPU pinning: %s" % c.get("pinning", "?"),
        "* machine: %d CPUs; load average %s before, %s after, 1-min average %s to %s during the "
        "runs (these include the benchmark's own processes); other work before the run (busy %%): %s; "
        "other processes' CPU during the measured windows: median %s%%, at most %s%% of a core" % (
            m["cpus"], "/".join("%.2f" % x for x in m["loadavg_before"]),
            "/".join("%.2f" % x for x in m.get("loadavg_after") or []) or "?",
            fmt(min(m["loadavg_during"]) if m.get("loadavg_during") else None, "%.2f"),
            fmt(max(m["loadavg_during"]) if m.get("loadavg_during") else None, "%.2f"),
            ", ".join("%s %.0f" % (n, u["busy_pct"]) for n, u in m["background_load"].items()),
            fmt(percentile(others, 50)), fmt(max(others) if others else None)),
        "* each cell: %d s warm-up thrown away, then %d s measured%s" % (
            c["warmup"], c["duration"], ", median of %d runs" % c["repeat"] if c["repeat"] > 1 else ""),
    ]
    for note in report.get("notes", []):
        lines.append("* %s" % note)
    if report.get("stopped"):
        lines.append("* **the run stopped early: %s**" % report["stopped"])
    lines += targetsMarkdown(report)
    if report["handshakes"]:
        lines += [
            "", "### Full TLS handshakes (a new connection and one GET /small each)", "",
            "`openssl s_time -new -www /small`, %d processes, each one connection at a time. "
            "\"resumed\" counts the connections s_time saw resume a session (SSL_session_reused); "
            "it must be 0." % c["handshake_clients"], "",
            "| target | handshakes/s | full | resumed | proxy CPU % | proxy CPU µs/handshake | "
            "mean ms per connection | origin conns opened | load core busy % | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in report["handshakes"]:
            lines.append("| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s |" % (
                row["target"], fmt(row["rate"]), row["full"], row["resumed"], fmt(row.get("proxy_cpu_pct")),
                fmt(row.get("proxy_us_per_op")), fmt(row.get("mean_ms"), "%.2f"),
                fmt(row.get("origin_conns_opened"), "%d"), fmt(row.get("load_core_busy_pct")),
                "; ".join(filter(None, [notes(row)] + (
                    ["%d client restarts" % row["client_restarts"]] if row.get("client_restarts") else [])))))
    for phase, title, errors in (
            ("https", "HTTPS on kept-alive connections (wrk, %d connections, 1 thread)" % c["connections"],
             "socket errors / HTTP ≥400"),
            ("h2", "HTTP/2 over TLS (h2load, ALPN h2, %d connections x %d streams, 1 thread)" % (
                c["h2_connections"], c["h2_streams"]), "failed / non-2xx")):
        if not report[phase]:
            continue
        lines += ["", "### " + title, "",
                  "| body | target | req/s | p50 ms | p99 ms | %s | proxy CPU %% | proxy CPU µs/req | "
                  "origin conns opened | load core busy %% | note |" % errors,
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for row in sorted(report[phase], key=lambda x: (c["bodies"].index(x["body"]), orderOf(x["target"]))):
            bad = ("%d / %d" % (row["socket_errors"], row["http_errors"]) if phase == "https"
                   else "%d / %s" % (row["failed"], fmt(row.get("non_2xx"), "%d")))
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["body"], row["target"], fmt(row["rate"]), fmt(row.get("p50_ms"), "%.2f"),
                fmt(row.get("p99_ms"), "%.2f"), bad, fmt(row.get("proxy_cpu_pct")),
                fmt(row.get("proxy_us_per_op"), "%.1f"), fmt(row.get("origin_conns_opened"), "%d"),
                fmt(row.get("load_core_busy_pct")), notes(row)))
    lines += ratiosMarkdown(report)
    if report.get("profiles"):
        lines += profileMarkdown(report["profiles"])
    lines += [
        "", "Proxy CPU is the user+system time of all the proxy's processes over the measured window "
        "(100% = one core); µs per handshake or request divides it by the operations in that window. "
        "\"load core\" is the CPU shared by the load generator and the origin: at 90% or more it, not "
        "the proxy, limited the rate. \"origin conns opened\" counts the TCP connections the origin "
        "accepted during the window (upstream keep-alive keeps it near 0). The handshake figures include "
        "the one small request on each connection; the HTTPS small-body row gives the cost of a "
        "request alone.",
    ]
    return "\n".join(lines) + "\n"


def orderOf(target: str) -> int:
    return 0 if target.startswith("direct") else 1 + list(TARGETS).index(target) if target in TARGETS else 9


def targetsMarkdown(report: dict) -> list[str]:
    lines = ["", "### Proxies and what they negotiate", "",
             "| target | version and settings | TLS (no SNI, as s_time and h2load) | ALPN | "
             "configured certificate served (no SNI / SNI 127.0.0.1 / SNI localhost) | problems |",
             "|---|---|---|---|---|---|"]
    for name, entry in report["targets"].items():
        tls = entry.get("tls", {})
        bare = tls.get("s_time, h2load: no SNI", {})
        byIp = tls.get("wrk: SNI 127.0.0.1", {})
        problems = entry.get("problems", [])
        if entry.get("error"):
            problems = [entry["error"]] + problems
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            name, entry.get("version", "?"),
            "%s, %s, %s, %s signature" % (bare.get("version"), bare.get("cipher"), bare.get("group"),
                                          bare.get("signature")) if bare.get("version") else "-",
            bare.get("alpn") or "-",
            " / ".join(("yes" if x.get("our_certificate") else "NO") if x else "-" for x in (
                bare, byIp, {"our_certificate": True} if "SNI localhost" in tls else {})),
            "; ".join(p.replace("|", "\\|").replace("\n", " ") for p in problems)[:600] or "none"))
    for name, entry in report["targets"].items():
        if entry.get("error") and entry.get("log_tail"):
            lines += ["", "The end of %s's log:" % name, "", "```", entry["log_tail"].rstrip()[-2500:], "```"]
    return lines


METRICS = (("handshakes", None, "handshakes/s"), ("https", "small", "HTTPS small req/s"),
           ("https", "64k", "HTTPS 64k req/s"), ("h2", "small", "HTTP/2 small req/s"),
           ("h2", "64k", "HTTP/2 64k req/s"))


def ratioRows(report: dict) -> list[dict]:
    """
    relayd against each peer per metric: the rate ratio, the ratio of
    operations per CPU second (peer µs per operation / relayd's), and which
    of the two tells the capacity: the rate ratio only when the peer's own
    core was the limit (its proxy CPU at 90% or more and the load core
    below it).
    """
    out = []
    for phase, body, label in METRICS:
        cells = {row["target"]: row for row in report[phase] if body is None or row.get("body") == body}
        rel = cells.get("relayd")
        if rel is None:
            continue
        for peer in PEERS:
            other = cells.get(peer)
            if other is None:
                continue
            peerBound = (other.get("proxy_cpu_pct") or 0) >= SATURATED_PCT and (
                other.get("load_core_busy_pct") or 0) < SATURATED_PCT
            out.append({
                "metric": label, "peer": peer, "relayd": rel["rate"], "other": other["rate"],
                "rate_ratio": ratio(rel["rate"], other["rate"]),
                "relayd_us": rel.get("proxy_us_per_op"), "other_us": other.get("proxy_us_per_op"),
                "cpu_ratio": ratio(other.get("proxy_us_per_op"), rel.get("proxy_us_per_op")),
                "judge": "rate" if peerBound else "CPU per op",
                "why": ("%s's core was the limit" % peer if peerBound else
                        "%s's core %s%% busy, load core %s%%" % (
                            peer, fmt(other.get("proxy_cpu_pct")), fmt(other.get("load_core_busy_pct")))),
            })
    return out


def ratiosMarkdown(report: dict) -> list[str]:
    rows = ratioRows(report)
    report["ratios"] = rows
    if not rows:
        return []
    lines = ["", "### relayd against the peers", "",
             "| metric | peer | relayd | peer | relayd/peer (rate) | relayd µs/op | peer µs/op | "
             "relayd/peer (ops per CPU second) | judge by | why |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for row in rows:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | **%s** | %s |" % (
            row["metric"], row["peer"], fmt(row["relayd"]), fmt(row["other"]), fmt(row["rate_ratio"], "%.2f"),
            fmt(row["relayd_us"]), fmt(row["other_us"], "%.1f"), fmt(row["cpu_ratio"], "%.3f"),
            row["judge"], row["why"]))
    lines += ["", "relayd/peer (rate) divides relayd's handshakes or requests per second by the peer's; "
              "(ops per CPU second) divides the peer's CPU µs per operation by relayd's, which is what "
              "relayd would reach on a core of its own against a load generator that never runs out. The "
              "rate ratio is a capacity ratio only when the peer filled its core while the load core had "
              "room; otherwise judge by CPU per operation."]
    return lines


def profileMarkdown(profiles: dict) -> list[str]:
    lines = ["", "### Where relayd's time goes (py-spy --native, one extra unmeasured run per phase, small body)",
             "", "py-spy stops relayd for each sample to read its native stack, which slows it down: the "
             "shares below matter, not its CPU % in these runs."]
    for phase, p in profiles.items():
        lines += ["", "%s: relayd used %s%% of a core; %d samples, %d of them waiting in the reactor's "
                  "poll, left out below (raw stacks: %s)." % (
                      phase, fmt(p.get("relayd_cpu_pct")), p["samples"], p["idle"], p["raw"]),
                  "", "By layer (the innermost Python frame, with the C code it called): " + ", ".join(
                      "%s %.0f%%" % (name, pct) for name, pct in p["layers"]) + ".",
                  "", "By component (self time): " + ", ".join(
                      "%s %.0f%%" % (name, pct) for name, pct in p["components"] if pct >= 1) + ".",
                  ""] + benchlib.profileTable(p)
    return lines


# ---------------------------------------------------------------------------
def parseArgs(argv: list[str]) -> argparse.Namespace:
    ap = benchlib.argumentParser("python3 benchmarks/tls.py", __doc__)
    add = ap.add_argument
    add("--only", default=",".join(PHASES),
        help="phases to run, comma list of handshakes, https, h2 (default all)")
    add("--targets", default=",".join(TARGETS),
        help="proxies, comma list of relayd, nginx, caddy (default all that are installed)")
    add("--quick", action="store_true", help="smoke test: 3 s runs after 1 s warm-up")
    add("--duration", type=int, default=None, help="measured seconds per run (default 10)")
    add("--warmup", type=int, default=None, help="warm-up seconds before each cell, thrown away (default 2)")
    add("--repeat", type=int, default=1, help="measured runs per cell, median kept (default 1)")
    add("--connections", type=int, default=50, help="wrk connections for HTTPS (default 50)")
    add("--bodies", default="small,64k", help="bodies for HTTPS and HTTP/2: small, 64k (default both)")
    add("--handshake-clients", type=int, default=32,
        help="parallel openssl s_time processes for the handshakes (default 32)")
    add("--h2-connections", type=int, default=4, help="h2load connections (default 4)")
    add("--h2-streams", type=int, default=16, help="h2load streams in flight per connection (default 16)")
    add("--wrk-timeout", type=int, default=5, help="wrk --timeout in seconds (default 5)")
    add("--workers", type=int, default=None,
        help="relayd's 'workers' (BENCH_WORKERS); pinned, they all share the proxy CPU")
    add("--python", default=None, help="interpreter that runs relayd, passed as PYTHON to relayd-target.sh")
    add("--relayd-args", default="", help="extra arguments for relayd-target.sh")
    add("--origin", choices=("auto", "nginx", "python"), default="auto",
        help="origin: nginx with the shared config when available (auto), or the asyncio one of http.py")
    add("--profile", metavar="DIR",
        help="after measuring relayd, sample it with py-spy --native in one extra run per phase; "
        "raw stacks go to DIR")
    benchlib.addRunOptions(ap, startHelp="seconds a proxy may take to serve HTTPS (default 30)")
    args = ap.parse_args(argv)
    args.only = [p for p in args.only.split(",") if p]
    if not args.only or any(p not in PHASES for p in args.only):
        ap.error("--only takes a comma list of %s" % ", ".join(PHASES))
    args.targets = [t for t in args.targets.split(",") if t]
    if "relayd" not in args.targets or any(t not in TARGETS for t in args.targets):
        ap.error("--targets takes a comma list of %s, with relayd" % ", ".join(TARGETS))
    args.bodies = [b for b in args.bodies.split(",") if b]
    if not args.bodies or any(b not in BODIES for b in args.bodies):
        ap.error("--bodies takes small and/or 64k")
    benchlib.quickDefaults(args)
    benchlib.requireAtLeastOne(ap, args, ("duration", "repeat", "connections", "handshake_clients",
                                          "h2_connections", "h2_streams", "wrk_timeout"))
    if args.warmup < 0:
        ap.error("--warmup cannot be negative")
    args.python = benchlib.defaultPython(args.python)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    benchlib.catchSignals()
    benchlib.raiseFileLimit()
    facts = checkInterpreter(args.python)
    work = tempfile.mkdtemp(prefix="relayd-tls-bench.")
    kids = Children(say)
    bench = Bench(args, kids, work)
    report = bench.report
    report.update({
        "relayd": facts, "targets": {}, "handshakes": [], "https": [], "h2": [], "profiles": {}, "notes": [],
        "tools": toolVersions(),
        "config": {"duration": args.duration, "warmup": args.warmup, "repeat": args.repeat,
                   "connections": args.connections, "bodies": args.bodies, "phases": args.only,
                   "handshake_clients": args.handshake_clients, "h2_connections": args.h2_connections,
                   "h2_streams": args.h2_streams, "workers": args.workers, "relayd_args": args.relayd_args,
                   "argv": sys.argv},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg()},
    })
    rc = 0
    try:
        report["machine"]["background_load"] = benchlib.backgroundLoad(say)
        rc = run(bench)
    except (Stop, KeyboardInterrupt) as e:
        say("interrupted (%s)" % (str(e) or "Ctrl-C"))
        report["stopped"] = "interrupted (%s)" % (str(e) or "Ctrl-C")
        rc = 130
    except RuntimeError as e:
        say("FAILED: %s" % e)
        report["stopped"] = str(e)
        rc = 1
    finally:
        kids.stopAll()
        report["machine"]["loadavg_after"] = loadavg()
        report["machine"]["loadavg_during"] = bench.loadSamples
        benchlib.dropWork(say, work, args.keep)
    text = markdown(report)
    print(text)
    benchlib.writeOutputs(say, args.json, args.md, report, text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
