#!/usr/bin/env python3
"""Lean WebSocket load tools for benchmarks/websocket.py (standard library only).

Three commands, each printing its results as lines "WSLOAD {json}" on stdout:

echo PORT [--reuse-port]
    An echo origin on 127.0.0.1:PORT (0: any free port): every frame comes
    back with the same FIN bit and opcode, unmasked, so fragmented messages
    are echoed as they came; pings get pongs, a close is answered and the
    connection closed. Several processes may share a port with --reuse-port.
    Prints {"event": "listening", "port": N} once it accepts connections.

rtt PORT --connections C --size S --warmup W --duration D [--watch NAME=SID ...]
    Closed-loop round trips: each of C connections sends one binary message
    of S bytes, waits for the whole echo (checked byte for byte), and sends
    the next. After all connections are open, W seconds of warm-up are
    thrown away; only round trips that start and end inside the next D
    seconds count. CPU time over exactly that window is reported for this
    process, for each process session given as NAME=SID, and for each CPU
    (busy %, from /proc/stat).

hold PORT --count N [--source ADDR] [--concurrency K]
    Opens N WebSockets (from ADDR, so that several clients can use several
    loopback addresses), at most K handshakes at a time, sends one small
    message on each and waits for its echo, then reports and waits for
    commands on stdin: "echo" sends one more message on every connection
    and counts the answers; "close" runs the closing handshake on all of
    them, reports and exits. End of input drops every connection and exits.

The clients mask every frame with a fresh key per frame (the rtt client
rotates a few pre-masked copies of its message), as RFC 6455 requires.
Unmasking uses the websockets library's C function when it is installed;
without it, the origin spends about 40 µs more on each 16 KiB message.
"""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

import benchlib  # beside this file; standard library only too

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
HEAD_LIMIT = 16384


def emit(**fields):
    """One result line for the driver."""
    sys.stdout.write("WSLOAD " + json.dumps(fields) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# framing (RFC 6455, section 5)
# ---------------------------------------------------------------------------
def pythonXorMask(data, key):
    """C{data} XOR the repeated 4-byte C{key}, with big-integer arithmetic
    (much faster than a Python loop, but about 40 µs for 16 KiB)."""
    size = len(data)
    if not size:
        return b""
    pad = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(size, "little")


try:
    # the websockets library's C masking, where it is installed: 16 KiB in
    # under a microsecond, so that the origin keeps up with large messages
    from websockets.speedups import apply_mask as xorMask
except ImportError:
    xorMask = pythonXorMask


def frameHead(first, size, key=None):
    """The header of a frame whose first byte is C{first} (FIN and opcode)."""
    bit = 0x80 if key is not None else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, bit | 127, size)
    return head + key if key is not None else head


def frame(opcode, payload, masked):
    """A whole, final frame; masked (as a client sends) or not."""
    if masked:
        key = os.urandom(4)
        return frameHead(0x80 | opcode, len(payload), key) + xorMask(payload, key)
    return frameHead(0x80 | opcode, len(payload)) + payload


def parseFrames(buf):
    """Take the complete frames off the front of bytearray C{buf}: a list of
    (first byte, unmasked payload)."""
    frames = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        first, second = buf[pos], buf[pos + 1]
        size = second & 0x7F
        at = pos + 2
        if size == 126:
            if end - at < 2:
                break
            size = int.from_bytes(buf[at:at + 2], "big")
            at += 2
        elif size == 127:
            if end - at < 8:
                break
            size = int.from_bytes(buf[at:at + 8], "big")
            at += 8
        key = None
        if second & 0x80:
            if end - at < 4:
                break
            key = bytes(buf[at:at + 4])
            at += 4
        if end - at < size:
            break
        with memoryview(buf) as view:
            payload = xorMask(view[at:at + size], key) if key else bytes(view[at:at + size])
        frames.append((first, payload))
        pos = at + size
    if pos:
        del buf[:pos]
    return frames


def acceptKey(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshakeRequest(port):
    """A client's opening handshake and the Sec-WebSocket-Accept it expects."""
    key = base64.b64encode(os.urandom(16))
    request = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (port, key))
    return request, acceptKey(key)


def headFields(head):
    """Status line and {lower-case name: value} of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def checkResponse(head, accept):
    """None when C{head} is a valid 101 for our key, else what is wrong."""
    status, fields = headFields(head)
    words = status.split(None, 2)
    if len(words) < 2 or words[1] != "101":
        return "handshake answered %r" % status[:80]
    if fields.get("sec-websocket-accept", "").encode("latin-1") != accept:
        return "wrong Sec-WebSocket-Accept"
    return None


# ---------------------------------------------------------------------------
# echo origin
# ---------------------------------------------------------------------------
class EchoServer(asyncio.Protocol):
    """One connection to the echo origin."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()
        self.open = False
        self.closing = False
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > HEAD_LIMIT:
                    self.transport.close()
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            _, fields = headFields(head)
            key = fields.get("sec-websocket-key", "").encode("latin-1")
            if "websocket" not in fields.get("upgrade", "").lower() or not key:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                self.transport.close()
                return
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                                 % acceptKey(key))
            self.open = True
        out = []
        for first, payload in parseFrames(self.buf):
            opcode = first & 0x0F
            if opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
                out.append(frameHead(first, len(payload)))
                out.append(payload)
            elif opcode == OP_PING:
                out.append(frame(OP_PONG, payload, False))
            elif opcode == OP_CLOSE:
                if not self.closing:
                    out.append(frame(OP_CLOSE, payload[:2], False))
                self.closing = True
                break
        if out:
            self.transport.write(b"".join(out))
        if self.closing:
            self.transport.close()


def serveEcho(port, reusePort):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(4096)
        sock.setblocking(False)
        server = await loop.create_server(EchoServer, sock=sock)
        emit(event="listening", port=sock.getsockname()[1], pid=os.getpid())
        async with server:
            await server.serve_forever()
    asyncio.run(main())


# ---------------------------------------------------------------------------
# CPU readings (/proc)
# ---------------------------------------------------------------------------
def snapshot(watch):
    return {"t": time.monotonic(), "self": time.process_time(), "cpus": benchlib.cpuCounters(),
            "sessions": {name: benchlib.sessionCpuSeconds(sid) for name, sid in watch.items()}}


def cpuReport(before, after):
    wall = (after["t"] - before["t"]) or 1e-9
    out = {"client_cpu_pct": round(100.0 * (after["self"] - before["self"]) / wall, 1)}
    for name in before["sessions"]:
        used = after["sessions"][name] - before["sessions"][name]
        out["%s_cpu_s" % name] = round(used, 3)
        out["%s_cpu_pct" % name] = round(100.0 * used / wall, 1)
    out["cpus"] = benchlib.cpuUsage(before["cpus"], after["cpus"])
    return out


# ---------------------------------------------------------------------------
# client connection
# ---------------------------------------------------------------------------
class Client(asyncio.Protocol):
    """A client WebSocket: handshake, then whole messages to C{onMessage}."""

    def __init__(self, port, loop):
        self.port = port
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.transport = None
        self.buf = bytearray()
        self.open = False
        self.parts = []
        self.closeAnswered = False
        self.onMessage = None

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request, self.accept = handshakeRequest(self.port)
        transport.write(request)

    def data_received(self, data):
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > HEAD_LIMIT:
                    self.fail("handshake answer too long")
                return
            problem = checkResponse(bytes(self.buf[:end]), self.accept)
            del self.buf[:end + 4]
            if problem:
                self.fail(problem)
                return
            self.open = True
            if not self.opened.done():
                self.opened.set_result(None)
        for first, payload in parseFrames(self.buf):
            opcode = first & 0x0F
            if opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
                self.parts.append(payload)
                if first & 0x80:
                    message = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
                    self.parts = []
                    if self.onMessage is not None:
                        self.onMessage(message)
            elif opcode == OP_PING:
                self.transport.write(frame(OP_PONG, payload, True))
            elif opcode == OP_CLOSE:
                self.closeAnswered = True
                self.transport.close()
                return

    def fail(self, why):
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        self.transport.abort()

    def connection_lost(self, exc):
        self.open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(
                "closed during the handshake" + (": %s" % exc if exc else "")))
        if not self.closed.done():
            self.closed.set_result(self.closeAnswered)

    def send(self, data):
        self.transport.write(frame(OP_BINARY, data, True))

    def startClose(self):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(OP_CLOSE, struct.pack("!H", 1000), True))


async def connect(loop, port, source=None, timeout=10.0):
    """An open L{Client}, or an exception."""
    _, client = await asyncio.wait_for(loop.create_connection(
        lambda: Client(port, loop), "127.0.0.1", port,
        local_addr=(source, 0) if source else None), timeout)
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except BaseException:
        client.transport.abort()
        raise
    return client


def describe(exc):
    return ("%s: %s" % (type(exc).__name__, exc))[:200]


async def closeAll(clients, timeout):
    """Closing handshake on every client; returns how many got a close back."""
    for client in clients:
        client.startClose()
    waiting = [client.closed for client in clients]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
    clean = 0
    for client in clients:
        if client.closed.done() and client.closed.result():
            clean += 1
        elif client.transport is not None:
            client.transport.abort()
    return clean


# ---------------------------------------------------------------------------
# rtt: closed-loop round trips
# ---------------------------------------------------------------------------
class RoundTrips:
    """Drives one connection's closed loop and records its latencies."""

    def __init__(self, run, client):
        self.run = run
        self.client = client
        self.started = 0.0
        self.turn = 0
        client.onMessage = self.answered

    def next(self):
        run = self.run
        now = time.monotonic()
        if now >= run.end:
            run.finished(self)
            return
        self.started = now
        self.turn = (self.turn + 1) % len(run.frames)
        self.client.transport.write(run.frames[self.turn])

    def answered(self, message):
        now = time.monotonic()
        run = self.run
        if message != run.message:
            run.badEcho += 1
        if self.started >= run.measureFrom and now <= run.end:
            run.latencies.append(now - self.started)
        self.next()


class RttRun:
    def __init__(self, size, loop):
        self.message = bytes((n * 31 + 7) & 0xFF for n in range(size))
        self.frames = [frame(OP_BINARY, self.message, True) for _ in range(8)]
        self.latencies = []
        self.badEcho = 0
        self.measureFrom = self.end = float("inf")
        self.running = set()
        self.done = loop.create_future()

    def finished(self, driver):
        self.running.discard(driver)
        if not self.running and not self.done.done():
            self.done.set_result(None)


def percentile(ordered, p):
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


async def roundTrips(args):
    loop = asyncio.get_running_loop()
    watch = dict(spec.split("=", 1) for spec in args.watch)
    watch = {name: int(sid) for name, sid in watch.items()}
    run = RttRun(args.size, loop)
    clients, errors = [], []
    results = await asyncio.gather(*(connect(loop, args.port) for _ in range(args.connections)),
                                   return_exceptions=True)
    for result in results:
        (errors if isinstance(result, BaseException) else clients).append(result)
    if not clients:
        emit(event="rtt", error="no connection opened: %s" % describe(errors[0]))
        return 1
    # every connection answers once, byte for byte, before the clock starts
    probe = []
    for client in clients:
        waiter = loop.create_future()
        client.onMessage = lambda message, w=waiter: w.done() or w.set_result(message)
        client.transport.write(run.frames[0])
        probe.append(waiter)
    await asyncio.wait_for(asyncio.gather(*probe), 30)
    bad = sum(1 for w in probe if w.result() != run.message)
    if bad:
        emit(event="rtt", error="%d of %d first echoes differ from the message sent" % (bad, len(probe)))
        return 1
    now = time.monotonic()
    run.measureFrom = now + args.warmup
    run.end = run.measureFrom + args.duration
    marks = {}
    loop.call_at(run.measureFrom, lambda: marks.setdefault("from", snapshot(watch)))
    loop.call_at(run.end, lambda: marks.setdefault("to", snapshot(watch)))
    drivers = [RoundTrips(run, client) for client in clients]
    run.running.update(drivers)
    for driver in drivers:
        driver.next()
    lost = [client.closed for client in clients]
    await asyncio.wait([run.done] + lost, timeout=args.warmup + args.duration + 30,
                       return_when=asyncio.FIRST_COMPLETED)
    dropped = sum(1 for c in clients if c.closed.done())
    if not run.done.done():
        # a connection went away (or stalled): wait for the window to end, then stop
        await asyncio.sleep(max(0.0, run.end - time.monotonic()) + 0.2)
    while "to" not in marks:
        await asyncio.sleep(0.05)
    await closeAll(clients, 3.0)
    latencies = sorted(run.latencies)
    out = {"event": "rtt", "connections": len(clients), "connect_errors": len(errors),
           "first_connect_error": describe(errors[0]) if errors else None,
           "dropped": dropped, "bad_echo": run.badEcho, "size": args.size,
           "warmup_s": args.warmup, "duration_s": args.duration,
           "round_trips": len(latencies), "rt_per_s": len(latencies) / args.duration,
           "p50_us": None, "p90_us": None, "p99_us": None, "max_us": None}
    if latencies:
        out.update({"p50_us": round(percentile(latencies, 50) * 1e6),
                    "p90_us": round(percentile(latencies, 90) * 1e6),
                    "p99_us": round(percentile(latencies, 99) * 1e6),
                    "max_us": round(latencies[-1] * 1e6)})
    out.update(cpuReport(marks["from"], marks["to"]))
    emit(**out)
    return 0


# ---------------------------------------------------------------------------
# hold: many idle connections
# ---------------------------------------------------------------------------
async def echoAll(loop, clients, message, timeout):
    """Send C{message} on every client; how many echoed it correctly in time."""
    waiters = []
    for client in clients:
        if not client.open:
            continue
        waiter = loop.create_future()
        client.onMessage = lambda got, w=waiter: w.done() or w.set_result(got == message)
        client.send(message)
        waiters.append(waiter)
    if waiters:
        await asyncio.wait(waiters, timeout=timeout)
    for client in clients:
        client.onMessage = None
    return sum(1 for w in waiters if w.done() and w.result())


async def hold(args):
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(args.concurrency)
    message = b"live? %08d" % os.getpid()
    clients, failures = [], []

    async def openOne():
        async with gate:
            try:
                client = await connect(loop, args.port, args.source, args.timeout)
            except Exception as e:  # noqa: BLE001  refused, reset, timed out: counted
                failures.append(describe(e))
                return
            clients.append(client)
            if await echoAll(loop, [client], message, args.timeout) != 1:
                failures.append("no echo of the first message")

    started = time.monotonic()
    await asyncio.gather(*(openOne() for _ in range(args.count)))
    took = time.monotonic() - started
    emit(event="opened", opened=len(clients), failed=len(failures),
         first_error=failures[0] if failures else None, seconds=round(took, 3),
         live=sum(1 for c in clients if c.open))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "echo":
            started = time.monotonic()
            live = await echoAll(loop, clients, message, args.timeout)
            emit(event="echo", live=live, of=len(clients),
                 seconds=round(time.monotonic() - started, 3))
        elif line == "close":
            started = time.monotonic()
            clean = await closeAll(clients, args.timeout)
            emit(event="closed", clean=clean, of=len(clients),
                 seconds=round(time.monotonic() - started, 3))
            return 0
        elif not line:
            for client in clients:
                client.transport.abort()
            return 0


# ---------------------------------------------------------------------------
def parseArgs(argv):
    ap = benchlib.argumentParser("wsload.py", __doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="echo origin")
    echo.add_argument("port", type=int)
    echo.add_argument("--reuse-port", action="store_true")
    rtt = sub.add_parser("rtt", help="closed-loop round trips")
    rtt.add_argument("port", type=int)
    rtt.add_argument("--connections", type=int, default=20)
    rtt.add_argument("--size", type=int, default=64)
    rtt.add_argument("--warmup", type=float, default=2.0)
    rtt.add_argument("--duration", type=float, default=10.0)
    rtt.add_argument("--watch", action="append", default=[], metavar="NAME=SID")
    keep = sub.add_parser("hold", help="many idle connections")
    keep.add_argument("port", type=int)
    keep.add_argument("--count", type=int, required=True)
    keep.add_argument("--source", default=None, help="local address to connect from")
    keep.add_argument("--concurrency", type=int, default=16)
    keep.add_argument("--timeout", type=float, default=20.0)
    return ap.parse_args(argv)


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    if args.command == "echo":
        serveEcho(args.port, args.reuse_port)
        return 0
    if args.command == "rtt":
        return asyncio.run(roundTrips(args))
    return asyncio.run(hold(args))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
