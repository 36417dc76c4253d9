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
    A rule string literal for C{value}: backquoted unless it holds a backquote.
    """
    if "`" not in value:
        return f"`{value}`"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _call(name: str, *args: str) -> str:
    return f"{name}({', '.join(quote(a) for a in args)})"


def _anyOf(terms: list[str]) -> str:
    if len(terms) == 1:
        return terms[0]
    return "(" + " || ".join(terms) + ")"


def _allOf(terms: list[str]) -> str:
    if len(terms) == 1:
        return terms[0]
    return " && ".join(terms)


def _split(rule: str) -> list[tuple[str, list[str]]]:
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


def _pathTerm(template: str, kind: str) -> str:
    if not template.startswith("/"):
        raise RuleError(f"path must start with a slash, got {template!r}")
    if "{" not in template:
        return _call("Path" if kind == "path" else "PathPrefix", template)
    return _call("PathRegexp", templateRegexp(template, kind))


def _pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    if len(args) % 2:
        raise RuleError(f"the number of arguments must be a multiple of 2, got {list(args)}")
    return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]


def translate(rules: str | Sequence[str]) -> V1Translation:
    """
    Translate one v1 rule, or several (a frontend's routes, which must all
    match), into a v3 rule and middlewares.

    @raise RuleError: if a rule does not parse.
    """
    if isinstance(rules, str):
        rules = [rules]
    terms: list[str] = []
    strip: list[str] = []
    stripRegex: list[str] = []
    modifiers: dict[str, dict[str, Any]] = {}
    priority = 0
    for rule in rules:
        priority += defaultPriority(rule)
        for name, args in _split(rule):
            if name == "Host":
                terms.append(_anyOf([_call("Host", a) for a in args]))
            elif name == "HostRegexp":
                terms.append(_anyOf([_call("HostRegexp", templateRegexp(a, "host")) for a in args]))
            elif name in ("Path", "PathStrip"):
                terms.append(_anyOf([_pathTerm(a, "path") for a in args]))
            elif name in ("PathPrefix", "PathPrefixStrip"):
                terms.append(_anyOf([_pathTerm(a, "prefix") for a in args]))
            elif name in ("PathStripRegex", "PathPrefixStripRegex"):
                kind = "path" if name == "PathStripRegex" else "prefix"
                terms.append(_anyOf([_call("PathRegexp", templateRegexp(a, kind)) for a in args]))
            elif name == "Method":
                terms.append(_anyOf([_call("Method", a) for a in args]))
            elif name == "Headers":
                terms.append(
                    _allOf(
                        [
                            _call("Header", k, v) if v else _call("HeaderRegexp", k, ".*")
                            for k, v in _pairs(args)
                        ]
                    )
                )
            elif name == "HeadersRegexp":
                terms.append(
                    _allOf([_call("HeaderRegexp", k, v or ".*") for k, v in _pairs(args)])
                )
            elif name == "Query":
                flat = [part for arg in args for part in arg.split("=")]
                queryTerms = []
                for key, value in _pairs(flat):
                    if not value:
                        queryTerms.append(_call("QueryRegexp", key, ".*"))
                    elif "{" in value:
                        pattern = templateRegexp(f"{key}={value}", "query")
                        prefix = "^" + quoteMeta(key) + "="
                        queryTerms.append(_call("QueryRegexp", key, "^" + pattern[len(prefix):]))
                    else:
                        queryTerms.append(_call("Query", key, value))
                terms.append(_allOf(queryTerms))
            if name in ("PathStrip", "PathPrefixStrip"):
                strip = sorted(args, key=len, reverse=True)
            elif name in ("PathStripRegex", "PathPrefixStripRegex"):
                stripRegex = [
                    templateRegexp(a, "prefix") for a in sorted(args, key=len, reverse=True)
                ]
            elif name == "AddPrefix":
                modifiers["addPrefix"] = {"prefix": args[-1]}
            elif name == "ReplacePath":
                modifiers["replacePath"] = {"path": args[-1]}
            elif name == "ReplacePathRegex":
                regex, _, replacement = args[-1].strip().partition(" ")
                modifiers["replacePathRegex"] = {"regex": regex, "replacement": replacement}
    middlewares: list[tuple[str, dict[str, Any]]] = []
    if strip:
        middlewares.append(("stripPrefix", {"prefixes": strip}))
    if stripRegex:
        middlewares.append(("stripPrefixRegex", {"regex": stripRegex}))
    for kind in ("addPrefix", "replacePath", "replacePathRegex"):
        if kind in modifiers:
            middlewares.append((kind, modifiers[kind]))
    rule = _allOf(terms) if terms else _call("PathPrefix", "/")
    return V1Translation(rule=rule, middlewares=tuple(middlewares), priority=priority)
