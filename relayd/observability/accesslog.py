"""
The access log: one line per routed HTTP request, as Traefik writes it.

L{AccessLog} is a request observer (see L{relayd.entrypoints.RequestObserver})
that an entrypoint calls once a response is over. It computes Traefik's
fields (C{ClientHost}, C{RequestPath}, C{DownstreamStatus}, C{Duration} ...),
drops the lines the C{filters} reject, keeps, drops or redacts fields and
headers as C{fields} says, and formats the line in Traefik's C{common}
format (the Common Log Format plus request count, router, server URL and
duration), C{genericCLF} (the plain Common Log Format) or C{json}.

Lines go to C{accessLog.filePath} (standard output when unset), one write
per line, or with C{bufferingSize} set in batches of that many lines (at the
latest a second after the first line of a batch, and always at shutdown).
SIGUSR1 reopens the file, for rotation by an outside tool (logrotate); the
same signal reopens the process log file (L{relayd.observability.log}).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import signal
from typing import Any, Callable

from twisted.application import service
from twisted.logger import Logger

from relayd.config.static import AccessLog as AccessLogConfig
from relayd.proxy.wire import canonicalName
from relayd.runtime.gocompat import splitHostPort

COMMON = "common"
GENERIC_CLF = "genericCLF"
JSON = "json"

# How long a partial batch (bufferingSize) may wait before it is written.
BATCH_DELAY = 1.0

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Go's status for a request whose client went away before the answer.
CLIENT_CLOSED_REQUEST = 499

# The core fields the common formats read (lower-case, as fields.names are
# matched).
_CLF_KEYS = (
    "clienthost",
    "clientusername",
    "startutc",
    "startlocal",
    "requestmethod",
    "requestpath",
    "requestprotocol",
    "downstreamstatus",
    "downstreamcontentsize",
    "requestcount",
    "routername",
    "serviceurl",
    "duration",
)


class StatusCodeRanges:
    """
    C{filters.statusCodes}: codes (C{"404"}) and inclusive ranges
    (C{"500-599"}); a comma-separated entry counts as several.
    """

    def __init__(self, specs: tuple[str, ...]) -> None:
        ranges: list[tuple[int, int]] = []
        for spec in specs:
            for part in spec.split(","):
                bounds = [int(b) for b in part.strip().split("-")]
                ranges.append((bounds[0], bounds[-1]))
        self.ranges = tuple(ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.ranges)


class Fields:
    """
    C{fields}: which core fields are kept (C{defaultMode} and C{names},
    matched case-insensitively) and which request, origin and downstream
    headers are kept, dropped or redacted (C{headers.defaultMode} and
    C{headers.names}, matched in Go's canonical header spelling).
    """

    def __init__(self, config: Any) -> None:
        self.keepDefault = config.defaultMode != "drop"
        self.names = {name.lower(): mode != "drop" for name, mode in config.names.items()}
        headers = config.headers
        self.headerDefault = headers.defaultMode
        self.headerNames = {canonicalName(name.lower().encode("latin-1")).decode("latin-1"): mode for name, mode in headers.names.items()}
        # Nothing to look at when every header is dropped.
        self.noHeaders = self.headerDefault == "drop" and all(mode == "drop" for mode in self.headerNames.values())
        self._keep: dict[str, bool] = {}
        # The common case: every field kept.
        self.keepAll = self.keepDefault and all(self.names.values())

    def keep(self, key: str) -> bool:
        kept = self._keep.get(key)
        if kept is None:
            kept = self.names.get(key.lower(), self.keepDefault)
            self._keep[key] = kept
        return kept

    def headerMode(self, name: str) -> str:
        return self.headerNames.get(name, self.headerDefault)

    def addHeaders(self, out: dict[str, Any], prefix: str, headers: Any) -> None:
        """
        Put the kept (joined with commas) and redacted headers of C{headers}
        (a L{relayd.proxy.wire.HeaderMap}) into C{out}, named C{prefix}
        followed by the canonical header name.
        """
        if headers is None or self.noHeaders:
            return
        for lower, values in headers._fields.items():
            if lower == b"host":
                # Go keeps Host out of a request's header map.
                continue
            name = canonicalName(lower).decode("latin-1")
            mode = self.headerNames.get(name, self.headerDefault)
            if mode == "keep":
                out[prefix + name] = b",".join(values).decode("utf-8", "replace")
            elif mode == "redact":
                out[prefix + name] = "REDACTED"


def _goTime(seconds: float, utc: bool) -> datetime.datetime:
    if utc:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(seconds).astimezone()


def _offset(moment: datetime.datetime, colon: bool) -> str:
    delta = moment.utcoffset() or datetime.timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    if colon and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}" if colon else f"{sign}{hours:02d}{minutes:02d}"


def rfc3339(seconds: float, utc: bool, fraction: bool = True) -> str:
    """
    C{seconds} as Go writes a time in JSON (RFC 3339 with the fraction's
    trailing zeros cut, C{Z} for UTC) or, without C{fraction}, as logrus
    writes its C{time} field.
    """
    whole = int(seconds // 1)
    key = (whole, utc)
    cached = _SECONDS.get(key)
    if cached is None:
        moment = _goTime(whole, utc)
        cached = (moment.strftime("%Y-%m-%dT%H:%M:%S"), _offset(moment, colon=True))
        if len(_SECONDS) > 16:
            _SECONDS.clear()
        _SECONDS[key] = cached
    micro = round((seconds - whole) * 1e6)
    if micro >= 1000000:
        return rfc3339(whole + 1, utc, fraction)
    if fraction and micro:
        return cached[0] + "." + f"{micro:06d}".rstrip("0") + cached[1]
    return cached[0] + cached[1]


# The whole-second part of recent RFC 3339 times, by (second, utc).
_SECONDS: dict[tuple[int, bool], tuple[str, str]] = {}


def clfTime(seconds: float, utc: bool = True) -> str:
    """
    C{seconds} as the Common Log Format writes it: C{02/Jan/2006:15:04:05 -0700}.
    """
    moment = _goTime(seconds, utc)
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {_offset(moment, colon=False)}"
    )


def _nanoseconds(seconds: float) -> int:
    # Reactor time is good to the microsecond; finer digits are float noise.
    return round(seconds * 1e6) * 1000


def _splitHostPort(value: str) -> tuple[str, str]:
    try:
        return splitHostPort(value)
    except ValueError:
        return value, "-"


def _requestPath(uri: bytes) -> str:
    """
    The request target without scheme and authority (absolute-form targets
    are cut down to their path and query).
    """
    text = uri.decode("utf-8", "replace")
    if text[:1] != "/" and "://" in text:
        rest = text.split("://", 1)[1]
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or (0 <= query < slash):
            return "/" + rest[query:] if query >= 0 else "/"
        return rest[slash:]
    return text


def _quoted(value: Any) -> str:
    if value is None or value == "":
        return '"-"'
    return '"' + str(value).replace('"', '\\"') + '"'


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


class FileOutput:
    """
    Where lines go: a file opened for appending (created with its
    directories), reopened on demand, or standard output's descriptor.
    """

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.fd = 1
        if path:
            self.fd = self._open()

    def _open(self) -> int:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def reopen(self) -> None:
        if not self.path:
            return
        fd = self._open()
        old, self.fd = self.fd, fd
        os.close(old)

    def close(self) -> None:
        if self.path and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AccessLog:
    """
    Formats and writes the access log; L{observe} is the request observer.
    """

    _log = Logger()

    def __init__(self, config: AccessLogConfig, reactor: Any, output: Any = None) -> None:
        self.config = config
        self.reactor = reactor
        self.output = output if output is not None else FileOutput(config.filePath)
        fmt = config.format
        if fmt not in (COMMON, GENERIC_CLF, JSON):
            self._log.error(
                "unsupported access log format {name!r}, using the common format instead",
                name=fmt,
            )
            fmt = COMMON
        self.format = fmt
        filters = config.filters
        self.statusCodes = StatusCodeRanges(filters.statusCodes)
        self.retryAttempts = filters.retryAttempts
        self.minDuration = float(filters.minDuration)
        self.filtered = bool(self.statusCodes) or self.retryAttempts or self.minDuration > 0
        self.fields = Fields(config.fields)
        self.addInternals = config.addInternals
        self.bufferingSize = config.bufferingSize
        self.counter = itertools.count(1)
        self.pending: list[bytes] = []
        self._timer: Any = None
        self.stopping = False
        self._runtime: Any = None
        self._routerLogged: dict[str, bool] = {}
        self._clfSecond = -1
        self._clfStamp = ""
        # Which common-format fields are dropped by fields.names.
        fields = self.fields
        self._clfDropped = frozenset(key for key in _CLF_KEYS if not fields.keep(key))
        self._refererMode = fields.headerMode("Referer")
        self._userAgentMode = fields.headerMode("User-Agent")

    # -- deciding --

    def _routerWanted(self, context: Any) -> bool:
        """
        Whether requests of the context's router are logged: not those of
        routers to an @internal service unless addInternals, not those of a
        router whose observability.accessLogs is false.
        """
        runtime = context.runtime
        if runtime is not self._runtime:
            self._runtime = runtime
            self._routerLogged = {}
        name = context.router
        wanted = self._routerLogged.get(name)
        if wanted is None:
            wanted = True
            info = runtime.routers.get(name) if name else None
            config = getattr(info, "config", None)
            if config is not None:
                if not self.addInternals and config.service.endswith("@internal"):
                    wanted = False
                observability = config.observability
                if observability is not None and observability.accessLogs is False:
                    wanted = False
            self._routerLogged[name] = wanted
        return wanted

    def keepLine(self, status: int, retryAttempts: int, duration: float) -> bool:
        """
        The filters: with none set every line is kept; otherwise a line is
        kept when any one of them matches.
        """
        if not self.filtered:
            return True
        if status in self.statusCodes:
            return True
        if self.retryAttempts and retryAttempts > 0:
            return True
        return self.minDuration > 0 and duration > self.minDuration

    # -- the observer --

    def observe(self, request: Any, context: Any, failure: Any) -> None:
        """
        The request observer: log C{request} unless its router is not logged
        or the filters reject it.
        """
        if context.router and not self._routerWanted(context):
            return
        now = self.reactor.seconds()
        start = context.start or now
        duration = now - start
        code = request.code
        if failure is not None and not request.startedWriting:
            code = CLIENT_CLOSED_REQUEST
        retryAttempts = context.retryAttempts
        if not self.keepLine(code, retryAttempts, duration):
            return
        count = next(self.counter)
        if self.format == JSON:
            line = self.jsonLine(request, context, code, count, start, now)
        else:
            line = self.clfLine(request, context, code, count, start, duration)
        self.write(line.encode("utf-8", "replace"))

    def clientHost(self, request: Any, context: Any) -> str:
        forwarded = request.requestHeaders._fields.get(b"x-forwarded-for")
        if forwarded:
            return forwarded[0].decode("latin-1")
        return context.clientIP or "-"

    def clfLine(self, request: Any, context: Any, code: int, count: int, start: float, duration: float) -> str:
        """
        A line in the common (or generic CLF) format.
        """
        dropped = self._clfDropped
        if "startutc" not in dropped:
            second = int(start)
            if second != self._clfSecond:
                self._clfSecond = second
                self._clfStamp = clfTime(second)
            stamp = self._clfStamp
        elif "startlocal" not in dropped:
            stamp = clfTime(start, utc=False)
        else:
            stamp = "-"
        headers = request.requestHeaders._fields
        parts = [
            "-" if "clienthost" in dropped else self.clientHost(request, context),
            " - ",
            "-" if "clientusername" in dropped else _plain(context.clientUsername),
            " [",
            stamp,
            '] "',
            "-" if "requestmethod" in dropped else _plain(request.method.decode("latin-1")),
            " ",
            "-" if "requestpath" in dropped else _plain(_requestPath(request.uri)),
            " ",
            "-" if "requestprotocol" in dropped else _plain(request.clientproto.decode("latin-1")),
            '" ',
            "-" if "downstreamstatus" in dropped else str(code),
            " ",
            "-" if "downstreamcontentsize" in dropped else str(request.bytesSent),
            " ",
            self._clfHeader(headers, b"referer", self._refererMode),
            " ",
            self._clfHeader(headers, b"user-agent", self._userAgentMode),
        ]
        if self.format == COMMON:
            parts += [
                " ",
                "-" if "requestcount" in dropped else str(count),
                " ",
                '"-"' if "routername" in dropped else _quoted(context.router),
                " ",
                '"-"' if "serviceurl" in dropped else _quoted(context.upstream),
                " ",
                "0" if "duration" in dropped else str(int(duration * 1000)),
                "ms",
            ]
        parts.append("\n")
        return "".join(parts)

    @staticmethod
    def _clfHeader(headers: dict[bytes, list[bytes]], name: bytes, mode: str) -> str:
        if mode == "drop":
            return '"-"'
        values = headers.get(name)
        if not values:
            return '"-"'
        if mode == "redact":
            return '"REDACTED"'
        return _quoted(b",".join(values).decode("utf-8", "replace"))

    def coreFields(self, request: Any, context: Any, code: int, count: int, start: float, now: float) -> dict[str, Any]:
        """
        Traefik's core fields of a finished request, before C{fields} drops
        any.
        """
        duration = _nanoseconds(now - start)
        peer = request.getClientAddress()
        port = getattr(peer, "port", None)
        clientIP = context.clientIP
        clientPort = str(port) if port is not None else "-"
        if clientIP and port is not None:
            clientAddr = f"[{clientIP}]:{port}" if ":" in clientIP else f"{clientIP}:{port}"
        else:
            clientAddr = clientIP
        core: dict[str, Any] = {
            "StartUTC": rfc3339(start, utc=True),
            "StartLocal": rfc3339(start, utc=False),
            "Duration": duration,
            "RequestCount": count,
            "RequestMethod": request.method.decode("latin-1"),
            "RequestPath": _requestPath(request.uri),
            "RequestProtocol": request.clientproto.decode("latin-1"),
            "RequestScheme": "https" if request.isSecure() else "http",
            "RequestContentSize": request.body.received if getattr(request, "body", None) is not None else 0,
            "ClientAddr": clientAddr,
            "ClientHost": self.clientHost(request, context),
            "ClientPort": clientPort,
            "ClientUsername": context.clientUsername or "-",
            "DownstreamStatus": code,
            "DownstreamContentSize": request.bytesSent,
            "RetryAttempts": context.retryAttempts,
            "entryPointName": context.entryPoint,
            "OriginDuration": 0,
            "OriginStatus": 0,
            "OriginContentSize": 0,
            "Overhead": duration,
        }
        hosts = request.requestHeaders._fields.get(b"host")
        if hosts:
            host = hosts[0].decode("latin-1")
            core["RequestAddr"] = host
            core["RequestHost"], core["RequestPort"] = _splitHostPort(host)
        if context.router:
            core["RouterName"] = context.router
        if context.service:
            core["ServiceName"] = context.service
        upstream = context.upstream
        if upstream:
            core["ServiceURL"] = upstream
            core["ServiceAddr"] = upstream.split("://", 1)[-1].split("/", 1)[0]
        originStart = context.originStart
        if originStart:
            originDuration = _nanoseconds(now - originStart)
            core["OriginDuration"] = originDuration
            core["OriginStatus"] = context.originStatus or code
            core["OriginContentSize"] = request.bytesSent
            core["Overhead"] = duration - originDuration
        return core

    def jsonLine(self, request: Any, context: Any, code: int, count: int, start: float, now: float) -> str:
        """
        A line in Traefik's JSON format (logrus's: the fields plus level,
        msg and time, keys sorted).
        """
        core = self.coreFields(request, context, code, count, start, now)
        fields = self.fields
        if fields.keepAll:
            out = core
        else:
            keep = fields.keep
            out = {key: value for key, value in core.items() if keep(key)}
        if not fields.noHeaders:
            fields.addHeaders(out, "request_", request.requestHeaders)
            if context.originStart:
                fields.addHeaders(out, "origin_", request.responseHeaders)
            fields.addHeaders(out, "downstream_", request.responseHeaders)
        out["level"] = "info"
        out["msg"] = ""
        out["time"] = rfc3339(now, utc=False, fraction=False)
        return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"

    # -- writing --

    def write(self, line: bytes) -> None:
        """
        Write a line now, or queue it for the next batch (bufferingSize).
        """
        if not self.bufferingSize or self.stopping:
            self._write(line)
            return
        pending = self.pending
        pending.append(line)
        if len(pending) >= self.bufferingSize:
            self.flush()
        elif self._timer is None:
            self._timer = self.reactor.callLater(BATCH_DELAY, self.flush)

    def _write(self, data: bytes) -> None:
        try:
            self.output.write(data)
        except OSError as e:
            self._log.error("cannot write the access log: {error}", error=str(e))

    def flush(self) -> None:
        """
        Write the queued lines.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        pending, self.pending = self.pending, []
        if pending:
            self._write(b"".join(pending))

    def reopen(self) -> None:
        """
        Write what is queued, then reopen the file (after a rotation).
        """
        self.flush()
        try:
            self.output.reopen()
        except OSError as e:
            self._log.error("cannot reopen the access log {path}: {error}", path=self.config.filePath, error=str(e))

    def stop(self) -> None:
        """
        Write what is queued; lines of requests still finishing are written
        at once from now on.
        """
        self.stopping = True
        self.flush()

    def close(self) -> None:
        self.stop()
        self.output.close()


class AccessLogService(service.Service):
    """
    Opens the access log when relayd starts, reopens it (and the process
    log file) on SIGUSR1, writes what is queued when relayd stops and closes
    the file once the reactor has shut down (requests draining meanwhile
    still get their lines).
    """

    def __init__(self, config: AccessLogConfig, reactor: Any) -> None:
        self.setName("accesslog")
        self.config = config
        self.reactor = reactor
        self.accessLog = AccessLog(config, reactor)

    def startService(self) -> None:
        super().startService()
        installReopenSignal(self.reactor, self.accessLog.reopen)
        addTrigger = getattr(self.reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            addTrigger("after", "shutdown", self.accessLog.close)

    def stopService(self) -> None:
        super().stopService()
        self.accessLog.stop()


def installReopenSignal(reactor: Any, *reopeners: Callable[[], None]) -> None:
    """
    On SIGUSR1, reopen the process log file and call C{reopeners} (in the
    reactor thread); a handler installed before (twistd's own log rotation)
    still runs.
    """
    from relayd.observability.log import reopenFiles

    previous = signal.getsignal(signal.SIGUSR1)

    def reopenAll() -> None:
        reopenFiles()
        for reopen in reopeners:
            reopen()

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(reopenAll)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGUSR1, handler)


def setUp(relayd: Any) -> AccessLog | None:
    """
    Add the access log to a L{relayd.service.RelaydService} when the static
    configuration has an accessLog section: its observer goes to every
    entrypoint whose observability.accessLogs is true. Without one, only the
    process log file is reopened on SIGUSR1.
    """
    static = relayd.static
    config = static.accessLog
    if config is None:
        if static.log.filePath:
            _ReopenOnly(relayd.reactor).setServiceParent(relayd)
        return None
    accessLogService = AccessLogService(config, relayd.reactor)
    accessLogService.setServiceParent(relayd)
    observe = accessLogService.accessLog.observe
    for entryPoint in relayd.entryPoints.values():
        if entryPoint.config.observability.accessLogs:
            entryPoint.observers.append(observe)
    return accessLogService.accessLog


class _ReopenOnly(service.Service):
    def __init__(self, reactor: Any) -> None:
        self.setName("logreopen")
        self.reactor = reactor

    def startService(self) -> None:
        super().startService()
        installReopenSignal(self.reactor)


__all__ = ["AccessLog", "AccessLogService", "FileOutput", "clfTime", "rfc3339", "setUp"]
