"""
Traefik 1.x labels (C{traefik.port}, C{traefik.frontend.rule=Host:a.com},
C{traefik.backend.healthcheck.path}...) translated into the same decoded form
as v2/v3 labels, so that a provider completes both with
L{relayd.config.labels.applyDefaults}.

Each v1 frontend/backend pair becomes a router and a load-balancer service of
the same name: the backend name (C{traefik.backend}, normalized) or the
container's name. Segments (C{traefik.<segment>.port}, C{.frontend.*}...) give
one pair each, named C{<container>-<segment>}, and inherit the labels set
without a segment. v1 rules go through relayd's v1 rule translator, whose
modifiers become middlewares named after the router.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Mapping

from relayd.config.dynamic import Server, decodeDynamicWithWarnings
from relayd.config.errors import ConfigError, flatten
from relayd.config.gotemplate import normalize
from relayd.config.labels import NATIVE_PREFIX, LabelConfig, ServerHint, labelProblem
from relayd.config.schema import decode, parseBoolOrNone
from relayd.config.types import FrozenMap
from relayd.runtime.rules import RuleError
from relayd.runtime.rulesv1 import translate

__all__ = ["labelVersion", "translateV1"]

_V2_SECTIONS = ("http", "tcp", "udp", "tls")
_V1_ROOTS = ("port", "portindex", "portname", "protocol", "weight", "backend", "domain", "frontend")
_SEGMENT = re.compile(r"^(.+?)\.(port|portindex|portname|weight|protocol|backend|frontend\..+)$")
# Labels that configure the provider or are Traefik 1.x defaults relayd keeps.
_PROVIDER_KEYS = ("enable", "tags", "docker.network", "frontend.passtlscert")


def labelVersion(labels: Mapping[str, str], prefix: str = "traefik") -> Literal["v1", "v2"]:
    """
    Whether a container's labels are Traefik 1.x labels: those that use v1
    keys (C{traefik.port}, C{traefik.frontend.*}, C{traefik.<segment>.port}...)
    and none of the v2 sections (C{http}, C{tcp}, C{udp}, C{tls}), under
    either prefix. Labels with neither (only C{traefik.enable}, or none)
    are v2, so the provider's C{defaultRule} applies.
    """
    v1 = False
    for key in labels:
        lowered = key.lower()
        if lowered.startswith(NATIVE_PREFIX + ".") and prefix.lower() != NATIVE_PREFIX:
            # Only relayd.'s configuration sections mark v2 labels; other
            # relayd.* labels (markers, notes) say nothing about the format.
            if lowered[len(NATIVE_PREFIX) + 1 :].split(".")[0] in _V2_SECTIONS:
                return "v2"
            continue
        if not lowered.startswith(prefix.lower() + "."):
            continue
        rest = lowered[len(prefix) + 1 :]
        first = rest.split(".")[0]
        if first in _V2_SECTIONS:
            return "v2"
        if first in _V1_ROOTS or _SEGMENT.match(rest):
            v1 = True
    return "v1" if v1 else "v2"


def _subDomain(name: str) -> str:
    return name.lstrip("/").replace("/", "-").replace("_", "-")


def _segments(
    labels: Mapping[str, str], prefix: str
) -> dict[str, dict[str, tuple[str, str]]]:
    """
    The v1 labels per segment (C{""} for none), keyed by their lower-cased
    suffix after the prefix, each with the label key as written. Named
    segments inherit the unsegmented labels; with several named segments the
    unsegmented pair disappears, as in Traefik 1.x.
    """
    found: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for key in sorted(labels):
        if not key.lower().startswith(prefix.lower() + "."):
            continue
        rest = key[len(prefix) + 1 :]
        lowered = rest.lower()
        match = _SEGMENT.match(lowered)
        if match and not lowered.startswith(("frontend.", "backend.")):
            segment = rest[: len(match.group(1))]
            found.setdefault(segment, {})[match.group(2)] = (key, labels[key])
        else:
            found[""][lowered] = (key, labels[key])
    named = [s for s in found if s]
    for segment in named:
        for suffix, item in found[""].items():
            found[segment].setdefault(suffix, item)
    if named:
        del found[""]
    return found


def _headerMap(value: str) -> dict[str, str] | str:
    result: dict[str, str] = {}
    for part in value.split("||"):
        name, sep, text = part.partition(":")
        if not sep:
            return f"expected Name:value pairs separated by ||, got {part!r}"
        canonical = "-".join(w[:1].upper() + w[1:].lower() for w in name.strip().split("-"))
        result[canonical] = text.strip()
    return result


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Pair:
    """
    One v1 frontend/backend pair being translated: raw dynamic configuration
    plus, for each raw path, the label it came from.
    """

    def __init__(self, name: str, labels: dict[str, tuple[str, str]]) -> None:
        self.name = name
        self.labels = labels
        self.used: set[str] = set()
        self.sources: dict[tuple[str, ...], str] = {}
        self.problems: list[ConfigError] = []
        self.warnings: list[str] = []
        self.router: dict[str, Any] = {}
        self.lb: dict[str, Any] = {}
        self.middlewares: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []

    def get(self, suffix: str) -> tuple[str, str] | None:
        item = self.labels.get(suffix)
        if item is not None:
            self.used.add(suffix)
        return item

    def value(self, suffix: str) -> str | None:
        item = self.get(suffix)
        return None if item is None else item[1]

    def put(self, target: dict[str, Any], path: tuple[str, ...], key: str, value: Any, suffix: str) -> None:
        target[key] = value
        self.sources[path + (key,)] = self.labels[suffix][0]

    def bool(self, suffix: str) -> bool | None:
        item = self.get(suffix)
        if item is None:
            return None
        parsed = parseBoolOrNone(item[1].strip())
        if parsed is None:
            self.problems.append(labelProblem(item[0], f"expected true or false, got {item[1]!r}"))
        return parsed

    def middleware(self, kind: str, config: dict[str, Any], suffixes: list[str]) -> None:
        name = f"{self.name}-{kind.lower()}"
        self.middlewares[name] = {kind: config}
        for suffix in suffixes:
            if suffix in self.labels:
                self.sources.setdefault(("http", "middlewares", name), self.labels[suffix][0])
        self.order.append(name)


def _translatePair(pair: _Pair, ruleName: str, domain: str, prefix: str) -> None:
    routerPath = ("http", "routers", pair.name)
    lbPath = ("http", "services", pair.name, "loadBalancer")

    # Frontend.
    labelDomain = pair.value("domain")
    pair.get("frontend.redirect.permanent")
    rule = pair.get("frontend.rule")
    modifiers: list[tuple[str, dict[str, Any]]] = []
    v1Priority = 0
    if rule is not None and rule[1].strip():
        try:
            translation = translate(rule[1])
        except RuleError as e:
            pair.problems.append(labelProblem(rule[0], f"invalid v1 rule: {e}"))
        else:
            pair.router["rule"] = translation.rule
            pair.sources[routerPath + ("rule",)] = rule[0]
            modifiers = list(translation.middlewares)
            v1Priority = translation.priority
    else:
        useDomain = (labelDomain if labelDomain is not None else domain).strip()
        if not useDomain:
            pair.problems.append(
                labelProblem(
                    f"{prefix}.frontend.rule",
                    "not set, and no domain for the default rule "
                    "Host:<name>.<domain>; the container is skipped, as in Traefik 1.x",
                )
            )
        else:
            defaultRule = f"Host:{_subDomain(ruleName)}.{useDomain}"
            translation = translate(defaultRule)
            pair.router["rule"] = translation.rule
            v1Priority = translation.priority
    entryPoints = pair.value("frontend.entrypoints")
    if entryPoints is not None:
        pair.put(pair.router, routerPath, "entryPoints", _list(entryPoints), "frontend.entrypoints")
    priority = pair.value("frontend.priority")
    if priority is not None and priority.strip() not in ("", "0"):
        pair.put(pair.router, routerPath, "priority", priority.strip(), "frontend.priority")
    elif v1Priority:
        pair.router["priority"] = v1Priority
    passHost = pair.bool("frontend.passhostheader")
    if passHost is not None:
        pair.put(pair.lb, lbPath, "passHostHeader", passHost, "frontend.passhostheader")

    # Frontend middlewares, in Traefik 1.x's order: redirect, allow list,
    # authentication, headers, then the rule's modifiers.
    regex, replacement = pair.value("frontend.redirect.regex"), pair.value("frontend.redirect.replacement")
    if regex is not None or replacement is not None:
        config: dict[str, Any] = {"regex": regex or "", "replacement": replacement or ""}
        permanent = pair.bool("frontend.redirect.permanent")
        if permanent is not None:
            config["permanent"] = permanent
        pair.middleware("redirectRegex", config, ["frontend.redirect.regex", "frontend.redirect.replacement"])
    sourceRange = pair.value("frontend.whitelist.sourcerange") or pair.value("frontend.whitelistsourcerange")
    if sourceRange is not None:
        pair.middleware("ipAllowList", {"sourceRange": _list(sourceRange)}, ["frontend.whitelist.sourcerange", "frontend.whitelistsourcerange"])
    users = pair.value("frontend.auth.basic.users") or pair.value("frontend.auth.basic")
    usersFile = pair.value("frontend.auth.basic.usersfile")
    if users is not None or usersFile is not None:
        basic: dict[str, Any] = {}
        if users:
            basic["users"] = _list(users)
        if usersFile:
            basic["usersFile"] = usersFile
        removeHeader = pair.bool("frontend.auth.basic.removeheader")
        if removeHeader is not None:
            basic["removeHeader"] = removeHeader
        headerField = pair.value("frontend.auth.headerfield")
        if headerField:
            basic["headerField"] = headerField
        pair.middleware("basicAuth", basic, ["frontend.auth.basic.users", "frontend.auth.basic", "frontend.auth.basic.usersfile"])
    headers: dict[str, Any] = {}
    for suffix, key in (
        ("frontend.headers.customrequestheaders", "customRequestHeaders"),
        ("frontend.headers.customresponseheaders", "customResponseHeaders"),
    ):
        item = pair.get(suffix)
        if item is not None:
            parsed = _headerMap(item[1])
            if isinstance(parsed, str):
                pair.problems.append(labelProblem(item[0], parsed))
            else:
                headers[key] = parsed
    if headers:
        pair.middleware("headers", headers, ["frontend.headers.customrequestheaders", "frontend.headers.customresponseheaders"])
    for kind, config in modifiers:
        pair.middleware(kind, config, ["frontend.rule"])

    # Backend.
    method = pair.get("backend.loadbalancer.method")
    if method is not None:
        chosen = method[1].strip().lower()
        if chosen == "drr":
            pair.warnings.append(
                f"label {method[0]}: relayd has no dynamic round robin; weighted round robin is used"
            )
        elif chosen != "wrr":
            pair.problems.append(labelProblem(method[0], f"expected wrr or drr, got {method[1]!r}"))
    stickiness = pair.bool("backend.loadbalancer.stickiness")
    sticky = pair.bool("backend.loadbalancer.sticky")
    if stickiness or sticky:
        cookie: dict[str, Any] = {}
        for suffix, key in (
            ("backend.loadbalancer.stickiness.cookiename", "name"),
            ("backend.loadbalancer.stickiness.secure", "secure"),
            ("backend.loadbalancer.stickiness.httponly", "httpOnly"),
            ("backend.loadbalancer.stickiness.samesite", "sameSite"),
        ):
            text = pair.value(suffix)
            if text is not None:
                pair.put(cookie, lbPath + ("sticky", "cookie"), key, text, suffix)
        pair.lb["sticky"] = {"cookie": cookie}
    else:
        for suffix in ("cookiename", "secure", "httponly", "samesite"):
            pair.get(f"backend.loadbalancer.stickiness.{suffix}")
    path = pair.value("backend.healthcheck.path")
    if path is not None:
        check: dict[str, Any] = {}
        pair.put(check, lbPath + ("healthCheck",), "path", path, "backend.healthcheck.path")
        for suffix, key in (
            ("backend.healthcheck.interval", "interval"),
            ("backend.healthcheck.port", "port"),
            ("backend.healthcheck.scheme", "scheme"),
            ("backend.healthcheck.hostname", "hostname"),
        ):
            text = pair.value(suffix)
            if text is not None:
                pair.put(check, lbPath + ("healthCheck",), key, text, suffix)
        item = pair.get("backend.healthcheck.headers")
        if item is not None:
            parsed = _headerMap(item[1])
            if isinstance(parsed, str):
                pair.problems.append(labelProblem(item[0], parsed))
            else:
                pair.put(check, lbPath + ("healthCheck",), "headers", parsed, "backend.healthcheck.headers")
        pair.lb["healthCheck"] = check
    else:
        for suffix in ("interval", "port", "scheme", "hostname", "headers"):
            pair.get(f"backend.healthcheck.{suffix}")
    expression = pair.value("backend.circuitbreaker.expression") or pair.value("backend.circuitbreaker")
    if expression is not None:
        pair.middleware("circuitBreaker", {"expression": expression}, ["backend.circuitbreaker.expression", "backend.circuitbreaker"])
    flush = pair.value("backend.responseforwarding.flushinterval")
    if flush is not None:
        forwarding: dict[str, Any] = {}
        pair.put(forwarding, lbPath + ("responseForwarding",), "flushInterval", flush, "backend.responseforwarding.flushinterval")
        pair.lb["responseForwarding"] = forwarding
    if pair.order:
        pair.router["middlewares"] = pair.order


def _hint(pair: _Pair) -> ServerHint | None:
    port = pair.get("port")
    protocol = pair.get("protocol")
    weight = pair.get("weight")
    failed = False
    if port is not None:
        text = port[1].strip()
        if not (text.isascii() and text.isdigit() and 0 < int(text) <= 65535):
            pair.problems.append(labelProblem(port[0], f"expected a port number, got {port[1]!r}"))
            failed = True
    if protocol is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", protocol[1].strip()):
        pair.problems.append(labelProblem(protocol[0], f"expected a protocol such as http or https, got {protocol[1]!r}"))
        failed = True
    raw: dict[str, Any] = {"url": "http://placeholder"}
    if weight is not None:
        raw["weight"] = weight[1]
    try:
        server, _ = decode(Server, raw)
    except ConfigError as e:
        assert weight is not None
        pair.problems.append(labelProblem(weight[0], e.message))
        return None
    if failed:
        return None
    return ServerHint(
        port=port[1].strip() if port else "",
        scheme=protocol[1].strip() if protocol else "",
        server=server,
    )


def translateV1(
    labels: Mapping[str, str],
    name: str,
    domain: str = "",
    prefix: str = "traefik",
) -> tuple[LabelConfig, list[ConfigError]]:
    """
    Translate a container's Traefik 1.x labels.

    @param name: the container (or Compose C{service.project}, or Rancher
        C{service.stack}) name as Traefik 1.x saw it: it names the backend
        (normalized) and, with C{/} and C{_} made C{-}, the default rule's
        host C{<name>.<domain>}.
    @param domain: the provider's C{domain} (the C{traefik.domain} label
        overrides it).

    @return: as L{relayd.config.labels.decodeLabels}; the result goes through
        L{relayd.config.labels.applyDefaults} (whose default rule it never
        needs: every router has a rule or the container is skipped).
    """
    problems: list[ConfigError] = []
    warnings: list[str] = []
    raw: dict[str, Any] = {"http": {"routers": {}, "services": {}, "middlewares": {}}}
    sources: dict[tuple[str, ...], str] = {}
    hints: dict[tuple[str, str], ServerHint] = {}
    for segment, segmentLabels in _segments(labels, prefix).items():
        backend = segmentLabels.get("backend")
        if segment:
            pairName = normalize(f"{name}-{backend[1] if backend else segment}")
        else:
            pairName = normalize(backend[1]) if backend else normalize(name)
        pair = _Pair(pairName, segmentLabels)
        pair.get("backend")
        _translatePair(pair, name, domain, prefix)
        hint = _hint(pair)
        for suffix, (key, _) in sorted(segmentLabels.items()):
            if suffix in pair.used or suffix.startswith(_PROVIDER_KEYS):
                continue
            problems.append(
                labelProblem(key, "this Traefik 1.x label is not supported by relayd's v1 translation")
            )
        problems.extend(pair.problems)
        warnings.extend(pair.warnings)
        if hint is not None:
            hints[("http", pairName)] = hint
        if "rule" in pair.router:
            raw["http"]["routers"][pairName] = {**pair.router, "service": pairName}
        raw["http"]["services"][pairName] = {"loadBalancer": pair.lb}
        raw["http"]["middlewares"].update(pair.middlewares)
        sources.update(pair.sources)
    if problems:
        return LabelConfig(), list(dict.fromkeys(problems))
    try:
        config, more = decodeDynamicWithWarnings(raw)
    except ConfigError as e:
        for error in flatten([e]):
            problems.append(_locate(error, sources))
        return LabelConfig(), list(dict.fromkeys(problems))
    return LabelConfig(config=config, servers=FrozenMap(hints), warnings=tuple(warnings + more)), []


def _locate(error: ConfigError, sources: Mapping[tuple[str, ...], str]) -> ConfigError:
    path = tuple(error.path.split("."))
    for length in range(len(path), 0, -1):
        key = sources.get(path[:length])
        if key is not None:
            return labelProblem(key, error.message)
    return error
