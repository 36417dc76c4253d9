"""
What label-based providers (Docker, and others that describe one workload per
set of labels) share beyond the label decoder: Traefik's C{constraints}
expression over a container's labels (C{Label}, C{LabelRegex}, C{!}, C{&&},
C{||}, parentheses), and the merge of the configurations of several containers
into one (Traefik's C{provider.Merge}: an object defined alike by several
containers is kept once, a load balancer defined alike gets every container's
servers, and an object defined differently is dropped with an error).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import attrs

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError
from relayd.config.types import FrozenMap

__all__ = ["ConstraintError", "compileConstraints", "mergeContainers"]

Constraint = Callable[[Mapping[str, str]], bool]


class ConstraintError(ValueError):
    """
    A constraints expression that does not parse.
    """


_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||!|\(|\)|,)|(?P<name>[A-Za-z]+)|`(?P<raw>[^`]*)`|\"(?P<quoted>(?:[^\"\\]|\\.)*)\")"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConstraintError(f"unexpected {text[position:].strip()[:20]!r} at offset {position}")
        position = match.end()
        if match.group("op"):
            tokens.append(("op", match.group("op")))
        elif match.group("name"):
            tokens.append(("name", match.group("name")))
        elif match.group("raw") is not None:
            tokens.append(("str", match.group("raw")))
        else:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", match.group("quoted"))))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or kind
            raise ConstraintError(f"expected {wanted!r}, found {token[1] if token else 'the end'!r}")
        self.position += 1
        return token[1]

    def expression(self) -> Constraint:
        terms = [self.conjunction()]
        while self.peek() == ("op", "||"):
            self.position += 1
            terms.append(self.conjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda labels: any(term(labels) for term in terms)

    def conjunction(self) -> Constraint:
        terms = [self.unary()]
        while self.peek() == ("op", "&&"):
            self.position += 1
            terms.append(self.unary())
        if len(terms) == 1:
            return terms[0]
        return lambda labels: all(term(labels) for term in terms)

    def unary(self) -> Constraint:
        token = self.peek()
        if token == ("op", "!"):
            self.position += 1
            inner = self.unary()
            return lambda labels: not inner(labels)
        if token == ("op", "("):
            self.position += 1
            inner = self.expression()
            self.take("op", ")")
            return inner
        return self.call()

    def call(self) -> Constraint:
        name = self.take("name")
        self.take("op", "(")
        key = self.take("str")
        self.take("op", ",")
        value = self.take("str")
        self.take("op", ")")
        if name == "Label":
            return lambda labels: labels.get(key) == value
        if name == "LabelRegex":
            try:
                pattern = re.compile(value)
            except re.error as e:
                raise ConstraintError(f"LabelRegex: invalid regular expression {value!r}: {e}") from None
            return lambda labels: key in labels and pattern.search(labels[key]) is not None
        raise ConstraintError(f"unknown constraint {name!r}; expected Label or LabelRegex")


def compileConstraints(text: str) -> Constraint:
    """
    Compile Traefik's label constraints expression, such as
    C{Label(`a`, `b`) && !LabelRegex(`c`, `x.*`)}. An empty expression
    matches everything.

    @raise ConstraintError: when it does not parse.
    """
    if not text.strip():
        return lambda labels: True
    parser = _Parser(text)
    constraint = parser.expression()
    if parser.peek() is not None:
        raise ConstraintError(f"unexpected {parser.peek()[1]!r} after the expression")  # type: ignore[index]
    return constraint


# Merging containers.

_SECTIONS = (
    ("http", ("routers", "services", "middlewares", "serversTransports")),
    ("tcp", ("routers", "services", "middlewares", "serversTransports")),
    ("udp", ("routers", "services")),
    ("tls", ("stores",)),
)


def _addServers(existing: Any, new: Any) -> Any | None:
    """
    A service defined by two containers: one load balancer with both servers
    when the two are alike apart from their servers, else C{None}.
    """
    if existing == new:
        return existing
    lb, otherLB = getattr(existing, "loadBalancer", None), getattr(new, "loadBalancer", None)
    if lb is None or otherLB is None:
        return None
    if attrs.evolve(lb, servers=()) != attrs.evolve(otherLB, servers=()):
        return None
    servers = list(lb.servers)
    for server in otherLB.servers:
        if server not in servers:
            servers.append(server)
    return attrs.evolve(existing, loadBalancer=attrs.evolve(lb, servers=tuple(servers)))


def mergeContainers(configs: Mapping[str, DynamicConfig]) -> tuple[DynamicConfig, list[ConfigError]]:
    """
    Merge the configurations of several containers (keyed by a name that
    identifies each, in the order of the keys): objects defined alike are kept
    once; services whose load balancers are alike apart from the servers get
    all the servers; anything else defined twice differently is dropped, with
    an error naming the containers.
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    owners: dict[tuple[str, str, str], list[str]] = {}
    conflicts: set[tuple[str, str, str]] = set()
    for key in sorted(configs):
        config = configs[key]
        for protocol, kinds in _SECTIONS:
            section = getattr(config, protocol)
            for kind in kinds:
                target = merged.setdefault((protocol, kind), {})
                for name, value in getattr(section, kind).items():
                    owners.setdefault((protocol, kind, name), []).append(key)
                    if name not in target:
                        target[name] = value
                        continue
                    combined = _addServers(target[name], value) if kind == "services" else (
                        value if value == target[name] else None
                    )
                    if combined is None:
                        conflicts.add((protocol, kind, name))
                    else:
                        target[name] = combined
    errors = []
    for protocol, kind, name in sorted(conflicts):
        del merged[(protocol, kind)][name]
        errors.append(
            ConfigError(
                f"{protocol}.{kind}.{name}",
                "defined differently by the containers " + ", ".join(owners[(protocol, kind, name)])
                + "; dropped",
            )
        )
    sections: dict[str, Any] = {}
    for protocol, kinds in _SECTIONS:
        changes: dict[str, Any] = {kind: FrozenMap(merged.get((protocol, kind), {})) for kind in kinds}
        sections[protocol] = attrs.evolve(getattr(DynamicConfig(), protocol), **changes)
    return DynamicConfig(**sections), errors
