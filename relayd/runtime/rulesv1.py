"""
Traefik 1.x frontend rules (C{Host:a.com,b.com;PathPrefixStrip:/api}) translated
into a v3 rule plus the middlewares their modifiers imply, for providers that
read v1 labels.

In v1, C{;} separates matchers that must all match and C{,} separates the
alternatives of one matcher; there is no C{||} across matchers, no negation and
no parentheses. Modifiers run after matching in a fixed order whatever order they
are written in.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from relayd.runtime.gocompat import RegexError, compileGoRegexp
from relayd.runtime.matchers import quoteMeta, templateRegexp
from relayd.runtime.rules import RuleError, defaultPriority

_MATCHERS = (
    "Host",
    "HostRegexp",
    "Path",
    "PathStrip",
    "PathStripRegex",
    "PathPrefix",
    "PathPrefixStrip",
    "PathPrefixStripRegex",
    "Method",
    "Headers",
    "HeadersRegexp",
    "Query",
)
_MODIFIERS = ("AddPrefix", "ReplacePath", "ReplacePathRegex")


@attrs.frozen
class V1Translation:
    """
    @ivar rule: the equivalent v3 rule.
    @ivar middlewares: C{(kind, config)} pairs in the order they must run, with
        configurations in the dynamic model's raw form.
    @ivar priority: the v1 default priority (the length of the v1 rules).
    """

    rule: str
    middlewares: tuple[tuple[str, dict[str, Any]], ...]
    priority: int


def quote(value: str) -> str:
    """
    A rule string literal for C{value}: backquoted unless it holds a backquote
    or a carriage return (which Go drops from raw strings).
    """
    if "`" not in value and "\r" not in value:
        return f"`{value}`"
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _call(name: str, *args: str) -> str:
    return f"{name}({', '.join(quote(a) for a in args)})"


# A v3 term that no request matches, for v1 arguments that Traefik 1.x accepted
# but that could never match (gorilla/mux templates it failed to build).
NEVER = "!" + _call("PathRegexp", "^")


# A term of the translated rule: its text, and whether it is an || chain
# (which needs parentheses next to &&).
Term = tuple[str, bool]


def _anyOf(terms: list[str]) -> Term:
    terms = [t for t in terms if t != NEVER] or [NEVER]
    return " || ".join(terms), len(terms) > 1


def _allOf(terms: Sequence[Term]) -> str:
    if len(terms) == 1:
        return terms[0][0]
    return " && ".join(f"({text})" if isOr else text for text, isOr in terms)


def _split(rule: str) -> list[tuple[str, list[str]]]:
    """
    Split a v1 rule as Traefik 1.x did: on C{;}, then on C{:} (empty fields
    dropped), then the arguments on C{,} (empty fields dropped, then trimmed).
    """
    if not rule:
        raise RuleError("empty rule")
    parts = []
    for piece in (p for p in rule.split(";") if p):
        fields = [f for f in piece.split(":") if f]
        if not fields:
            raise RuleError(f"cannot parse {piece!r}")
        name = fields[0].strip()
        if name not in _MATCHERS and name not in _MODIFIERS:
            raise RuleError(f"unknown v1 matcher {fields[0]!r} in {piece!r}")
        args = [a.strip() for a in ":".join(fields[1:]).split(",") if a]
        if not args:
            raise RuleError(f"no arguments in {piece!r}")
        parts.append((name, args))
    return parts


def _gorillaRegexp(template: str, kind: str) -> str | None:
    """
    The regexp gorilla/mux builds for a template, or None where it fails to
    build the route (v1 then silently never matches it).
    """
    if kind != "host" and template and not template.startswith("/"):
        return None
    try:
        pattern = templateRegexp(template, kind)
        compileGoRegexp(pattern)
    except (RuleError, RegexError):
        return None
    return pattern


def _pathTerm(template: str, kind: str) -> str:
    """
    A gorilla/mux C{Path} (C{kind="path"}) or C{PathPrefix} (C{kind="prefix"})
    template as a v3 term.
    """
    pattern = _gorillaRegexp(template, kind)
    if pattern is None:
        return NEVER
    if template and "{" not in template:
        return _call("Path" if kind == "path" else "PathPrefix", template)
    return _call("PathRegexp", pattern)


def _plainPrefixTerm(prefix: str) -> str:
    """
    Traefik 1.x's own prefix matcher (used when the argument has no C{{}}): a
    plain string prefix of the path, with no leading slash required.
    """
    if prefix.startswith("/"):
        return _call("PathPrefix", prefix)
    return _call("PathRegexp", "^" + quoteMeta(prefix))


def _pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    if len(args) % 2:
        raise RuleError(f"the number of arguments must be a multiple of 2, got {list(args)}")
    return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]


def _headerTerms(args: Sequence[str], regexp: bool) -> Term:
    # gorilla keeps the pairs in a map: a repeated name keeps its last value.
    pairs = dict(_pairs(args))
    terms = []
    for key, value in pairs.items():
        if regexp:
            try:
                compileGoRegexp(value)
            except RegexError as e:
                raise RuleError(str(e)) from None
        if not key:
            terms.append(NEVER)
        elif value and not regexp:
            terms.append(_call("Header", key, value))
        else:
            terms.append(_call("HeaderRegexp", key, value or ".*"))
    return _allOf([(t, False) for t in terms]), False


def _queryTerms(args: Sequence[str]) -> Term:
    flat = [part for arg in args for part in arg.split("=")]
    terms = []
    for key, value in _pairs(flat):
        pattern = templateRegexp(f"{key}={value}", "query")
        try:
            compileGoRegexp(pattern)
        except RegexError as e:
            raise RuleError(str(e)) from None
        if not value:
            terms.append(_call("QueryRegexp", key, ".*"))
        elif "{" in value and "{" not in key:
            prefix = "^" + quoteMeta(key) + "="
            terms.append(_call("QueryRegexp", key, "^" + pattern[len(prefix):]))
        else:
            terms.append(_call("Query", key, value))
    return _allOf([(t, False) for t in terms]), False


def translate(rules: str | Sequence[str]) -> V1Translation:
    """
    Translate one v1 rule, or several (a frontend's routes, which must all
    match), into a v3 rule and middlewares.

    Modifiers run in Traefik 1.x's order (the nesting of its handlers):
    stripPrefixRegex, stripPrefix, addPrefix, replacePathRegex, replacePath.
    Path arguments that Traefik 1.x accepted but could never match (a template
    without a leading slash, unbalanced braces or a bad regexp) give a term that
    never matches, as they did in Traefik 1.x.

    @raise RuleError: if a rule does not parse.
    """
    if isinstance(rules, str):
        rules = [rules]
    terms: list[Term] = []
    strip: list[str] = []
    stripRegex: list[str] = []
    modifiers: dict[str, dict[str, Any]] = {}
    priority = 0
    for rule in rules:
        priority += defaultPriority(rule)
        for name, args in _split(rule):
            if name == "Host":
                terms.append(_anyOf([_call("Host", a) if a else NEVER for a in args]))
            elif name == "HostRegexp":
                patterns = [_gorillaRegexp(a, "host") for a in args]
                terms.append(
                    _anyOf([NEVER if p is None else _call("HostRegexp", p) for p in patterns])
                )
            elif name in ("Path", "PathStrip", "PathStripRegex"):
                terms.append(_anyOf([_pathTerm(a, "path") for a in args]))
            elif name == "PathPrefixStripRegex":
                terms.append(_anyOf([_pathTerm(a, "prefix") for a in args]))
            elif name in ("PathPrefix", "PathPrefixStrip"):
                terms.append(
                    _anyOf(
                        [_pathTerm(a, "prefix") if "{" in a else _plainPrefixTerm(a) for a in args]
                    )
                )
            elif name == "Method":
                terms.append(_anyOf([_call("Method", a) if a else NEVER for a in args]))
            elif name in ("Headers", "HeadersRegexp"):
                terms.append(_headerTerms(args, regexp=name == "HeadersRegexp"))
            elif name == "Query":
                terms.append(_queryTerms(args))
            if name in ("PathStrip", "PathPrefixStrip"):
                strip = sorted(args, key=len, reverse=True)
            elif name in ("PathStripRegex", "PathPrefixStripRegex"):
                stripRegex = [
                    pattern
                    for pattern in (
                        _gorillaRegexp(a, "prefix") for a in sorted(args, key=len, reverse=True)
                    )
                    if pattern is not None
                ]
            elif name == "AddPrefix":
                modifiers["addPrefix"] = {"prefix": args[-1]}
            elif name == "ReplacePath":
                modifiers["replacePath"] = {"path": args[-1]}
            elif name == "ReplacePathRegex":
                # Traefik 1.x splits on every space and ignores the modifier
                # (with a warning) unless that gives exactly two parts.
                parts = args[-1].split(" ")
                if len(parts) == 2:
                    modifiers["replacePathRegex"] = {"regex": parts[0], "replacement": parts[1]}
                else:
                    modifiers.pop("replacePathRegex", None)
    middlewares: list[tuple[str, dict[str, Any]]] = []
    if stripRegex:
        middlewares.append(("stripPrefixRegex", {"regex": stripRegex}))
    if strip:
        middlewares.append(("stripPrefix", {"prefixes": strip}))
    for kind in ("addPrefix", "replacePathRegex", "replacePath"):
        if kind in modifiers:
            middlewares.append((kind, modifiers[kind]))
    rule = _allOf(terms) if terms else _call("PathPrefix", "/")
    return V1Translation(rule=rule, middlewares=tuple(middlewares), priority=priority)
