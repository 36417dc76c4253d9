"""
The REST API (C{api@internal}): Traefik's endpoints under C{api.basePath},
answered from the generation the request was routed on. Lists are sorted,
filtered and paginated as Traefik does; every answer carries the generation
in C{X-Relayd-Generation}. Paths under C{dashboard/} are handed to the
dashboard, as Traefik's API router serves its dashboard too.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import sys
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from relayd import __version__
from relayd.api import shapes
from relayd.config.static import API
from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import notFound, plainResponse
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo, Runtime

CODENAME = "relayd"
DEFAULT_PER_PAGE = 100
GENERATION_HEADER = b"x-relayd-generation"
NEXT_PAGE_HEADER = b"x-next-page"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class APIError(Exception):
    """
    An answer of the API other than 200: its status code and message.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class Collection:
    """
    One kind of object the API lists: where it lives in the runtime, how it
    is shown, and which filters and sort keys apply.
    """

    layer: str
    kind: str
    shape: Callable[[ObjectInfo, str, list[str] | None], dict[str, Any]]
    idName: str

    @property
    def attribute(self) -> str:
        """
        The L{Runtime} attribute holding these objects (C{tcpRouters}).
        """
        return self.kind if self.layer == "http" else self.layer + self.kind.capitalize()

    @property
    def routers(self) -> bool:
        return self.kind == "routers"

    @property
    def notFound(self) -> str:
        return f"{self.kind[:-1]} not found"


_SHAPES = {
    "routers": (shapes.routerShape, "routerID"),
    "services": (shapes.serviceShape, "serviceID"),
    "middlewares": (shapes.middlewareShape, "middlewareID"),
}
_COLLECTIONS: dict[tuple[str, str], Collection] = {
    (layer, kind): Collection(layer, kind, *_SHAPES[kind])
    for layer in ("http", "tcp", "udp")
    for kind in ("routers", "services", "middlewares")
    if (layer, kind) != ("udp", "middlewares")
}


def _routerSortKey(sortBy: str) -> Callable[[ObjectInfo], Any] | None:
    return {
        "provider": lambda info: info.provider,
        "priority": lambda info: info.priority,
        "status": lambda info: info.status,
        "rule": lambda info: getattr(info.config, "rule", ""),
        "service": lambda info: info.config.service,
        "entryPoints": lambda info: len(info.config.entryPoints),
    }.get(sortBy)


def _serversCount(info: ObjectInfo) -> int:
    loadBalancer = getattr(info.config, "loadBalancer", None)
    return len(loadBalancer.servers) if loadBalancer is not None else 0


def _otherSortKey(sortBy: str, services: bool) -> Callable[[ObjectInfo], Any] | None:
    keys: dict[str, Callable[[ObjectInfo], Any]] = {
        "type": lambda info: info.kind.lower(),
        "provider": lambda info: info.provider,
        "status": lambda info: info.status,
    }
    if services:
        keys["servers"] = _serversCount
    return keys.get(sortBy)


@attrs.frozen
class Criterion:
    """
    Traefik's list filters: C{search}, C{status}, C{serviceName},
    C{middlewareName}.
    """

    search: str = ""
    status: str = ""
    serviceName: str = ""
    middlewareName: str = ""

    @classmethod
    def fromQuery(cls, query: Mapping[str, str]) -> Criterion | None:
        criterion = cls(
            search=query.get("search", ""),
            status=query.get("status", ""),
            serviceName=query.get("serviceName", ""),
            middlewareName=query.get("middlewareName", ""),
        )
        return criterion if criterion != cls() else None

    def withStatus(self, status: str) -> bool:
        return not self.status or status.lower() == self.status.lower()

    def searchIn(self, *values: str) -> bool:
        needle = self.search.lower()
        return not needle or any(needle in value.lower() for value in values)

    def filterService(self, name: str) -> bool:
        if not self.serviceName:
            return True
        if "@" in name:
            return self.serviceName == name
        return self.serviceName.partition("@")[0] == name

    def filterMiddleware(self, names: tuple[str, ...]) -> bool:
        return not self.middlewareName or self.middlewareName in names

    def keeps(self, info: ObjectInfo, collection: Collection) -> bool:
        if not self.withStatus(info.status):
            return False
        if not collection.routers:
            return self.searchIn(info.name)
        config = info.config
        if collection.layer == "udp":
            return self.searchIn(info.name) and self.filterService(config.service)
        return (
            self.searchIn(config.rule, info.name)
            and self.filterService(config.service)
            and self.filterMiddleware(config.middlewares)
        )


def _intParam(query: Mapping[str, str], key: str, default: int) -> int:
    raw = query.get(key, "")
    if not raw:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        value = 0
    if value <= 0:
        raise APIError(400, f"invalid request: {key}: {value}")
    return value


def paginate(query: Mapping[str, str], total: int) -> tuple[int, int, int]:
    """
    The slice of a list to answer and the next page (1 when this is the last
    one), from C{page} and C{per_page}.

    @raise APIError: 400 for a bad number or a page past the end.
    """
    perPage = _intParam(query, "per_page", DEFAULT_PER_PAGE)
    page = _intParam(query, "page", 1)
    start = (page - 1) * perPage
    if start != 0 and start >= total:
        raise APIError(400, f"invalid request: page: {page}, per_page: {perPage}")
    end = min(start + perPage, total)
    nextPage = page + 1 if page * perPage < total else 1
    return start, end, nextPage


def sortInfos(infos: list[ObjectInfo], query: Mapping[str, str], collection: Collection) -> list[ObjectInfo]:
    """
    Order a list as Traefik does: by C{sortBy} (name by default), ties by
    name, C{direction} asc (default) or anything else for descending.
    """
    sortBy = query.get("sortBy", "")
    descending = query.get("direction", "") not in ("", "asc")
    if collection.routers:
        key = _routerSortKey(sortBy)
    else:
        key = _otherSortKey(sortBy, collection.kind == "services")
    if key is None:
        return sorted(infos, key=lambda info: info.name, reverse=descending)
    return sorted(infos, key=lambda info: (key(info), info.name), reverse=descending)


def _users(users: Mapping[str, list[str]] | None, info: ObjectInfo) -> list[str] | None:
    return users.get(info.name, []) if users is not None else None


def _decodeName(segment: str, idName: str) -> str:
    bad = _BAD_ESCAPE.search(segment)
    if bad is not None:
        raise APIError(400, f'unable to decode {idName} "{segment}": invalid URL escape "{segment[bad.start():bad.start() + 3]}"')
    return unquote(segment, errors="surrogateescape")


@implementer(IHTTPHandler)
class APIHandler:
    """
    Answers Traefik's API paths under C{api.basePath} from the request's
    generation (C{request.relayd.runtime}).
    """

    _log = Logger()

    def __init__(self, context: BuildContext, state: Mapping[str, Any], api: API) -> None:
        self.context = context
        self.state = state
        self.api = api
        self.prefix = api.basePath.rstrip("/")
        self._dashboard: Any = None

    def handle(self, request: Any) -> None:
        context = request.relayd
        runtime: Runtime = context.runtime
        request.responseHeaders.setRawHeaders(GENERATION_HEADER, [str(runtime.generation).encode()])
        path = context.forwardPath
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            notFound(request)
            return
        rest = path[len(self.prefix):] or "/"
        if rest == "/dashboard" or rest.startswith("/dashboard/") or rest == "/":
            self._dashboardPath(request, rest)
            return
        if request.method not in (b"GET", b"HEAD"):
            request.responseHeaders.setRawHeaders(b"allow", [b"GET, HEAD"])
            self._json(request, 405, {"message": "method not allowed"})
            return
        query: dict[str, str] = {}
        pairs = parse_qsl(context.rawQuery, keep_blank_values=True)
        for key, value in pairs:
            query.setdefault(key, value)
        try:
            self._route(request, runtime, rest, query, pairs)
        except APIError as e:
            self._json(request, e.code, {"message": e.message})

    def _route(self, request: Any, runtime: Runtime, rest: str, query: dict[str, str], pairs: list[tuple[str, str]]) -> None:
        static = runtime.static
        segments = rest.split("/")[1:]
        if segments[:1] == ["debug"] and self.api.debug:
            if segments == ["debug", "vars"]:
                self._json(request, 200, self._debugVars(runtime))
                return
        elif segments[:1] == ["api"]:
            what = segments[1:]
            if what == ["rawdata"]:
                self._json(request, 200, shapes.rawData(runtime))
                return
            if what == ["overview"]:
                self._json(request, 200, shapes.overview(runtime, static))
                return
            if what == ["version"]:
                self._json(request, 200, self._version(static))
                return
            if what == ["explain"]:
                self._explain(request, runtime, query, pairs)
                return
            if what[:1] == ["entrypoints"] and len(what) <= 2:
                self._entryPoints(request, static, what[1:], query)
                return
            if len(what) in (2, 3):
                collection = _COLLECTIONS.get((what[0], what[1]))
                if collection is not None:
                    infos: Mapping[str, ObjectInfo] = getattr(runtime, collection.attribute)
                    users = None if collection.routers else shapes.usedByMap(runtime, collection.layer, collection.kind)
                    if len(what) == 2:
                        self._list(request, infos, collection, query, users)
                    else:
                        self._one(request, infos, collection, what[2], users)
                    return
        notFound(request)

    def _list(
        self,
        request: Any,
        infos: Mapping[str, ObjectInfo],
        collection: Collection,
        query: dict[str, str],
        users: Mapping[str, list[str]] | None,
    ) -> None:
        criterion = Criterion.fromQuery(query)
        kept = [info for info in infos.values() if criterion is None or criterion.keeps(info, collection)]
        ordered = sortInfos(kept, query, collection)
        start, end, nextPage = paginate(query, len(ordered))
        request.responseHeaders.setRawHeaders(NEXT_PAGE_HEADER, [str(nextPage).encode()])
        shown = [collection.shape(info, collection.layer, _users(users, info)) for info in ordered[start:end]]
        self._json(request, 200, shown)

    def _one(
        self,
        request: Any,
        infos: Mapping[str, ObjectInfo],
        collection: Collection,
        segment: str,
        users: Mapping[str, list[str]] | None,
    ) -> None:
        name = _decodeName(segment, collection.idName)
        info = infos.get(name)
        if info is None:
            raise APIError(404, f"{collection.notFound}: {name}")
        self._json(request, 200, collection.shape(info, collection.layer, _users(users, info)))

    def _entryPoints(self, request: Any, static: Any, rest: list[str], query: dict[str, str]) -> None:
        entryPoints = static.entryPoints
        if rest:
            name = _decodeName(rest[0], "entryPointID")
            if name not in entryPoints:
                raise APIError(404, f"entry point not found: {name}")
            self._json(request, 200, shapes.entryPointShape(name, entryPoints[name]))
            return
        names = sorted(entryPoints)
        start, end, nextPage = paginate(query, len(names))
        request.responseHeaders.setRawHeaders(NEXT_PAGE_HEADER, [str(nextPage).encode()])
        self._json(request, 200, [shapes.entryPointShape(n, entryPoints[n]) for n in names[start:end]])

    def _version(self, static: Any) -> dict[str, Any]:
        startDate = self.state.get("startDate")
        if startDate is None:
            startDate = self.context.reactor.seconds() if self.context.reactor is not None else 0.0
        return shapes.version(__version__, CODENAME, float(startDate), self.api.disableDashboardAd)

    def _explain(self, request: Any, runtime: Runtime, query: dict[str, str], pairs: list[tuple[str, str]]) -> None:
        try:
            from relayd.runtime.explain import explainRequest
        except ModuleNotFoundError as e:
            if e.name not in ("relayd.runtime.explain",):
                raise
            raise APIError(501, "explain is not available") from None
        entryPoint = query.get("entrypoint", "")
        url = query.get("url", "")
        if not entryPoint:
            raise APIError(400, "the entrypoint parameter is required")
        if not url:
            raise APIError(400, "the url parameter is required")
        headers = []
        for key, value in pairs:
            if key != "header":
                continue
            name, sep, headerValue = value.partition(":")
            if not sep or not name.strip():
                raise APIError(400, f"invalid header parameter {value!r}: expected Name:Value")
            headers.append((name.strip(), headerValue.strip()))
        clientIP = query.get("clientIP", "") or request.relayd.clientIP
        try:
            result = explainRequest(runtime, entryPoint, query.get("method", "") or "GET", url, headers, clientIP)
        except ValueError as e:
            raise APIError(400, str(e)) from None
        self._json(request, 200, result)

    def _debugVars(self, runtime: Runtime) -> dict[str, Any]:
        """
        A small, Python-flavoured stand-in for Go's expvar page.
        """
        usage = resource.getrusage(resource.RUSAGE_SELF)
        memstats: dict[str, Any] = {"maxRSS": usage.ru_maxrss * 1024}
        try:
            with open("/proc/self/statm") as f:
                memstats["rss"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        memstats["gcCounts"] = list(gc.get_count())
        memstats["gcCollections"] = [generation["collections"] for generation in gc.get_stats()]
        connections: dict[str, int] = {}
        service = self.state.get("service")
        for name, entryPoint in getattr(service, "entryPoints", {}).items():
            connections[name] = sum(len(getattr(site, "channels", ())) for site in entryPoint.sites)
        return {
            "cmdline": list(sys.argv),
            "memstats": memstats,
            "relayd": {"generation": runtime.generation, "openConnections": connections},
        }

    def _dashboardPath(self, request: Any, rest: str) -> None:
        if not self.api.dashboard:
            notFound(request)
            return
        if rest == "/" or rest == "/dashboard":
            prefix = ""
            if rest == "/":
                forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-prefix", [b""])[0].decode("latin-1")
                parts = urlsplit(forwarded)
                if not parts.scheme and not parts.netloc:
                    prefix = forwarded.rstrip("/")
            location = f"{prefix}{self.prefix}/dashboard/"
            request.responseHeaders.setRawHeaders(b"location", [location.encode("latin-1")])
            plainResponse(request, 302, "")
            return
        handler = self._dashboardHandler()
        if handler is None:
            notFound(request)
            return
        request.relayd.forwardPath = rest[len("/dashboard"):]
        handler.handle(request)

    def _dashboardHandler(self) -> Any:
        if self._dashboard is None:
            try:
                from relayd.api.dashboard import dashboardService
            except ImportError:
                self._log.warn("the dashboard is not available in this relayd")
                return None
            self._dashboard = dashboardService(self.context, self.state)
        return self._dashboard

    def _json(self, request: Any, code: int, data: Any) -> None:
        body = shapes.encode(data)
        request.setResponseCode(code)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [b"application/json"])
        headers.setRawHeaders(b"content-length", [str(len(body)).encode()])
        if request.method != b"HEAD":
            request.write(body)
        request.finish()


def apiService(context: BuildContext, state: Mapping[str, Any]) -> APIHandler:
    """
    The handler of C{api@internal} for one generation. Without an C{api}
    section the service does not exist for routers, as in Traefik.
    """
    api = context.static.api
    if api is None:
        raise BuildError("api is not enabled")
    return APIHandler(context, state, api)
