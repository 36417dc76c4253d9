"""
Explaining a routing decision without sending a request: which router of an
entrypoint a request would reach, with its middlewares, service and the server
the service would pick now, and why every router evaluated before it did not
match. Used by C{relayd explain} and C{GET /api/explain}.

Nothing here changes the runtime: the server pick peeks at the balancer (a
copy of its round-robin state), honouring health and a sticky cookie the
request carries.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from twisted.web.http_headers import Headers

from relayd.runtime.matchers import HTTP_V2, HTTP_V3, RouteRequest
from relayd.runtime.routing import BadRequestPath, Route, cleanPath, normalizePath, routeRequest
from relayd.runtime.rules import Branch, Leaf, RuleError, Tree, parseTree

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def explainRequest(
    runtime: Any,
    entryPoint: str,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    clientIP: str = "127.0.0.1",
) -> dict[str, Any]:
    """
    How C{runtime} would route a request on C{entryPoint}, as a JSON-able
    dictionary (see docs/cli.rst).

    @param url: an absolute C{http://} or C{https://} URL (the scheme says
        whether the request arrives over TLS), or an origin-form target
        (C{/path?query}) with a C{Host} header in C{headers}.

    @raise ValueError: for an unknown entrypoint, a bad method, URL or header.
    """
    entryPoints = runtime.static.entryPoints
    if entryPoint not in entryPoints:
        defined = ", ".join(sorted(entryPoints)) or "none"
        raise ValueError(f'unknown entrypoint "{entryPoint}" (defined: {defined})')
    config = entryPoints[entryPoint]
    if getattr(config.parsedAddress, "protocol", "tcp") != "tcp":
        raise ValueError(f'entrypoint "{entryPoint}" is not an HTTP entrypoint')
    if not _TOKEN.fullmatch(method or ""):
        raise ValueError(f"invalid method {method!r}")
    headerList: list[tuple[str, str]] = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name or ""):
            raise ValueError(f"invalid header name {name!r}")
        value = value.strip(" \t")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"invalid value for header {name}")
        headerList.append((name, value))
    host, rawPath, rawQuery, secure = _target(url, headerList)
    try:
        path = normalizePath(rawPath)
        if config.http.sanitizePath and path != "*":
            path = cleanPath(path)
        request = routeRequest(
            host=host,
            path=path,
            rawQuery=rawQuery,
            method=method,
            headers=_lookup(headerList),
            clientIP=clientIP,
            encodeQuerySemicolons=config.http.encodeQuerySemicolons,
        )
    except BadRequestPath as e:
        raise ValueError(f"invalid URL {url!r}: {e}") from None
    table = runtime.table(entryPoint)
    ordered = sorted(table.plain + table.secure, key=lambda r: (-r.priority, r.name))
    syntaxDefault = runtime.static.core.defaultRuleSyntax
    skipped = []
    match = None
    for route in ordered:
        if route.tls != secure:
            reason = "TLS only" if route.tls else "plain HTTP only (the request is over TLS)"
            skipped.append(_skip(route, reason))
            continue
        if route.matcher(request):
            match = route
            break
        info = runtime.routers.get(route.name)
        syntax = (info.config.ruleSyntax if info is not None else None) or syntaxDefault
        skipped.append(_skip(route, whyNot(route.rule, syntax, request)))
    return {
        "entryPoint": entryPoint,
        "request": {
            "method": method,
            "host": request.host,
            "path": request.path,
            "query": request.rawQuery,
            "tls": secure,
            "headers": [[name, value] for name, value in headerList],
        },
        "match": None if match is None else _matched(runtime, entryPoint, match, headerList),
        "skipped": skipped,
    }


def _target(url: str, headers: list[tuple[str, str]]) -> tuple[str, str, str, bool]:
    hostHeader = next((v for k, v in headers if k.lower() == "host"), None)
    if url.startswith("/"):
        if hostHeader is None:
            raise ValueError(f"invalid URL {url!r}: a path needs a Host header (or give an absolute URL)")
        rawPath, _, rawQuery = url.partition("?")
        return hostHeader, rawPath.partition("#")[0], rawQuery.partition("#")[0], False
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ValueError(f"invalid URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"invalid URL {url!r}: expected http://host/path or https://host/path")
    if any(c in url for c in " \t\r\n"):
        raise ValueError(f"invalid URL {url!r}: whitespace in the URL")
    authority = parts.netloc.rpartition("@")[2]
    return authority, parts.path or "/", parts.query, parts.scheme == "https"


def _lookup(headers: list[tuple[str, str]]) -> Callable[[str], list[str]]:
    def values(name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in headers if k.lower() == wanted]

    return values


def _skip(route: Route, reason: str) -> dict[str, Any]:
    return {"router": route.name, "rule": route.rule, "priority": route.priority, "reason": reason}


# Why a rule does not match


def _show(arg: str) -> str:
    return f"`{arg}`" if "`" not in arg else '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def callText(leaf: Leaf) -> str:
    """
    A leaf as it would be written in a rule.
    """
    return f"{'!' if leaf.negated else ''}{leaf.name}({', '.join(_show(a) for a in leaf.args)})"


def _subject(leaf: Leaf, request: RouteRequest) -> str:
    name = leaf.name
    if name in ("Host", "HostHeader", "HostRegexp"):
        return f'host "{request.host}"'
    if name in ("Path", "PathPrefix", "PathRegexp"):
        return f'path "{request.path}"'
    if name == "Method":
        return f'method "{request.method}"'
    if name == "ClientIP":
        return f'client IP "{request.clientIP}"'
    if name in ("Query", "QueryRegexp"):
        return f'query "{request.rawQuery}"' if request.rawQuery else "an empty query"
    if name in ("Header", "HeaderRegexp", "Headers", "HeadersRegexp"):
        names = leaf.args[0:1] if name in ("Header", "HeaderRegexp") else leaf.args[0::2]
        described = []
        for header in names:
            values = request.headers(header)
            if values:
                described.append(f"header {header}: " + ", ".join(f'"{v}"' for v in values))
            else:
                described.append(f"header {header} (absent)")
        return "; ".join(described)
    return "the request"


def _evaluate(tree: Tree, builders: Mapping[str, Any], request: RouteRequest) -> tuple[bool, str]:
    if isinstance(tree, Branch):
        leftMatched, leftWhy = _evaluate(tree.left, builders, request)
        if tree.op == "and":
            if not leftMatched:
                return False, leftWhy
            return _evaluate(tree.right, builders, request)
        if leftMatched:
            return True, ""
        rightMatched, rightWhy = _evaluate(tree.right, builders, request)
        return rightMatched, "" if rightMatched else f"{leftWhy}; and {rightWhy}"
    matched = builders[tree.name](tree.args)(request)
    if tree.negated:
        matched = not matched
    if matched:
        return True, ""
    plain = Leaf(tree.name, tree.args)
    if tree.negated:
        return False, f"{callText(tree)} excludes {_subject(tree, request)}, which {callText(plain)} matches"
    return False, f"{callText(plain)} does not match {_subject(tree, request)}"


def whyNot(rule: str, syntax: str, request: RouteRequest) -> str:
    """
    Which part of a rule fails for a request: for a conjunction the first part
    that fails, for a disjunction every branch.
    """
    builders = HTTP_V2 if syntax == "v2" else HTTP_V3
    try:
        tree = parseTree(rule, list(builders))
        matched, why = _evaluate(tree, builders, request)
    except RuleError as e:
        return f"invalid rule: {e}"
    return why or "the rule matches"


# The server a service would pick


class _PeekRequest:
    """
    What a sticky cookie lookup reads from a request: its headers.
    """

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.requestHeaders = Headers()
        for name, value in headers:
            self.requestHeaders.addRawHeader(name.encode("latin-1"), value.encode("latin-1", "replace"))


def _matched(runtime: Any, entryPoint: str, route: Route, headers: list[tuple[str, str]]) -> dict[str, Any]:
    info = runtime.routers.get(route.name)
    router = info.config if info is not None else None
    middlewares: list[str] = []
    if info is not None and not route.name.endswith("@internal"):
        for ep in info.using:
            for name in runtime.static.entryPoints[ep].http.middlewares:
                if name not in middlewares:
                    middlewares.append(name)
    middlewares.extend(router.middlewares if router is not None else ())
    service = router.service if router is not None else ""
    server, reason = pickServer(runtime, service, _PeekRequest(headers))
    return {
        "router": route.name,
        "rule": route.rule,
        "priority": route.priority,
        "tls": route.tls,
        "middlewares": middlewares,
        "service": service,
        "server": server,
        "serverReason": reason,
    }


def _peek(balancer: Any, accept: Callable[[Any], bool]) -> Any:
    """
    The member a smooth weighted round robin would pick next, on a copy of
    its state so the real one does not advance.
    """
    twin = copy.copy(balancer)
    twin.current = list(balancer.current)
    return twin.pick(accept)


def _choose(handler: Any, request: _PeekRequest) -> tuple[Any, str]:
    sticky = getattr(handler, "sticky", None)
    if sticky is not None:
        member, _ = sticky.pinned(request)
        if member is not None and member in handler.members and handler.isUp(member):
            return member, f"sticky cookie {sticky.name}"
    member = _peek(handler.balancer, handler.isUp)
    if member is None:
        return None, "no healthy server"
    return member, "next in weighted round robin"


def pickServer(runtime: Any, service: str, request: Any, depth: int = 0) -> tuple[str | None, str]:
    """
    The server URL a service would send a request to now, with how it was
    chosen, or None with the reason there is none.
    """
    if service.endswith("@internal"):
        return None, f"internal service {service}"
    info = runtime.services.get(service)
    if info is None:
        return None, f'the service "{service}" does not exist'
    if info.handler is None or depth > 16:
        return None, f'the service "{service}" is {info.status}'
    handler = info.handler
    if info.kind == "loadBalancer":
        server, reason = _choose(handler, request)
        return server, reason
    if info.kind == "weighted":
        child, reason = _choose(handler, request)
        if child is None:
            return None, "no healthy child service"
        server, childReason = pickServer(runtime, child, request, depth + 1)
        return server, f"weighted child {child} ({reason}): {childReason}"
    if info.kind == "failover":
        from relayd.services.loadbalancer import _healthy

        failover = info.config.failover
        if _healthy(handler.main):
            server, childReason = pickServer(runtime, failover.service, request, depth + 1)
            return server, f"failover main {failover.service}: {childReason}"
        server, childReason = pickServer(runtime, failover.fallback, request, depth + 1)
        return server, f"failover fallback {failover.fallback} (main has no healthy server): {childReason}"
    return None, f"{info.kind} service: no single server"


# Rendering for the command line


def formatExplanation(explanation: Mapping[str, Any]) -> str:
    """
    The explanation as text for a terminal.
    """
    request = explanation["request"]
    scheme = "https" if request.get("tls") else "http"
    query = f"?{request['query']}" if request["query"] else ""
    lines = [
        f"{request['method']} {scheme}://{request['host']}{request['path']}{query}"
        f" on entrypoint {explanation['entryPoint']}"
    ]
    for skipped in explanation["skipped"]:
        lines.append(f"  skipped {skipped['router']} (priority {skipped['priority']}): {skipped['rule']}")
        lines.append(f"    {skipped['reason']}")
    match = explanation["match"]
    if match is None:
        lines.append("no router matches (404)")
        return "\n".join(lines) + "\n"
    lines.append(f"matched {match['router']} (priority {match['priority']}): {match['rule']}")
    lines.append(f"  middlewares: {', '.join(match['middlewares']) or '(none)'}")
    lines.append(f"  service: {match['service']}")
    server = match["server"] or "(none)"
    lines.append(f"  server: {server} ({match['serverReason']})")
    return "\n".join(lines) + "\n"
