"""
Routers that can never match: on every entrypoint (and TLS-ness) they serve, a
router evaluated before them matches every request they would match.

The analysis is conservative: it reports only what it can prove from the
rules' structure (a rule implies another when every request matching the first
also matches the second), never a guess. What it proves:

* a leaf implies an equal leaf, and any leaf implies a match-all leaf
  (C{PathPrefix(`/`)}, or a v3 C{HostRegexp} whose pattern matches the empty
  host, which Traefik treats as matching every request);
* C{Host(`a`)} implies C{Host(`a`)} (names compared without case);
* C{Path(`/q`)} and C{PathPrefix(`/q...`)} imply C{PathPrefix(`/q`)} and any
  shorter prefix of it; C{Method} compares without case;
* a conjunction in the shadower needs every part implied, a disjunction one
  branch; a disjunction in the shadowed rule needs every branch to imply the
  shadower, a conjunction one part.

One request is left out of "every request": the asterisk-form C{OPTIONS *},
whose path is not a path, so that C{PathPrefix(`/`)} counts as match-all as
users mean it. Internal routers (C{@internal}) are neither shadowers nor
shadowed: their catch-alls are deliberate.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from relayd.runtime.gocompat import RegexError, compileGoRegexp
from relayd.runtime.routing import Route, RouteTable
from relayd.runtime.rules import Branch, Leaf, RuleError, Tree, leaves, parseTree

_MAX_LEAVES = 64
_V3_MATCHERS = [
    "ClientIP", "Method", "Host", "HostRegexp", "Path", "PathPrefix", "PathRegexp",
    "Header", "HeaderRegexp", "Query", "QueryRegexp",
]
_V2_MATCHERS = [
    "ClientIP", "Method", "Host", "HostHeader", "HostRegexp", "Path", "PathPrefix",
    "Headers", "HeadersRegexp", "Query",
]


@attrs.frozen
class Atom:
    """
    A leaf with its meaning made explicit: C{kind} is C{host}, C{path},
    C{prefix}, C{method}, C{all} (matches every request) or C{opaque}
    (compared only for equality, syntax included).
    """

    kind: str
    value: object


_ALL = Atom("all", None)


def _atoms(leaf: Leaf, syntax: str) -> Tree | Atom | None:
    """
    The meaning of one leaf, as an atom or a tree of atoms (a v2 leaf with
    several arguments is a disjunction), or None if it cannot be used.
    """
    if leaf.negated:
        return Atom("opaque", (syntax, leaf))
    name = "Host" if leaf.name == "HostHeader" else leaf.name
    args = leaf.args
    if syntax == "v2" and name in ("Host", "Method", "Path", "PathPrefix") and len(args) > 1:
        tree: Tree = Leaf(name, (args[0],))
        for arg in args[1:]:
            tree = Branch("or", tree, Leaf(name, (arg,)))
        return tree
    if len(args) != 1:
        return Atom("opaque", (syntax, leaf))
    arg = args[0]
    if name == "Host":
        return Atom("host", arg.lower())
    if name == "Method":
        return Atom("method", arg.upper())
    if name in ("Path", "PathPrefix"):
        if not arg.startswith("/") or (syntax == "v2" and "{" in arg):
            return Atom("opaque", (syntax, leaf))
        if name == "PathPrefix" and arg == "/":
            return _ALL
        return Atom("path" if name == "Path" else "prefix", arg)
    if name == "HostRegexp" and syntax != "v2":
        try:
            if compileGoRegexp(arg).search("") is not None:
                return _ALL
        except RegexError:
            return None
    return Atom("opaque", (syntax, leaf))


@attrs.frozen
class _Node:
    op: str
    left: Node
    right: Node


Node = _Node | Atom


def meaning(rule: str, syntax: str) -> Node | None:
    """
    The rule as a tree of atoms, or None if it does not parse or is too big
    to reason about.
    """
    try:
        tree = parseTree(rule, _V2_MATCHERS if syntax == "v2" else _V3_MATCHERS)
    except RuleError:
        return None
    if sum(1 for _ in leaves(tree)) > _MAX_LEAVES:
        return None
    return _convert(tree, syntax)


def _convert(tree: Tree, syntax: str) -> Node | None:
    if isinstance(tree, Branch):
        left = _convert(tree.left, syntax)
        right = _convert(tree.right, syntax)
        if left is None or right is None:
            return None
        return _Node(tree.op, left, right)
    atom = _atoms(tree, syntax)
    if atom is None or isinstance(atom, Atom):
        return atom
    return _convert(atom, syntax)


def atomImplies(b: Atom, a: Atom) -> bool:
    """
    Whether every request matching atom C{b} matches atom C{a}.
    """
    if a.kind == "all" or a == b:
        return True
    if a.kind == "prefix" and b.kind in ("prefix", "path"):
        return str(b.value).startswith(str(a.value))
    return False


def implies(b: Node, a: Node) -> bool:
    """
    Whether every request matching C{b} provably matches C{a}.
    """
    if isinstance(b, _Node) and b.op == "or":
        return implies(b.left, a) and implies(b.right, a)
    if isinstance(a, _Node) and a.op == "and":
        return implies(b, a.left) and implies(b, a.right)
    # Now b is an atom or a conjunction, a an atom or a disjunction.
    if isinstance(a, _Node) and (implies(b, a.left) or implies(b, a.right)):
        return True
    if isinstance(b, _Node) and (implies(b.left, a) or implies(b.right, a)):
        return True
    return isinstance(a, Atom) and isinstance(b, Atom) and atomImplies(b, a)


def ruleImplies(b: str, bSyntax: str, a: str, aSyntax: str) -> bool:
    """
    Whether every request matching rule C{b} provably matches rule C{a}.
    """
    bMeaning = meaning(b, bSyntax)
    aMeaning = meaning(a, aSyntax)
    if bMeaning is None or aMeaning is None:
        return False
    return implies(bMeaning, aMeaning)


def findShadowed(
    tables: Mapping[str, RouteTable],
    syntaxOf: Callable[[str], str],
) -> dict[str, list[tuple[str, Route]]]:
    """
    The routers that never match, each with, for every entrypoint it serves,
    the router that takes its requests there.

    @param syntaxOf: the rule syntax (C{v2} or C{v3}) of a router by name.
    """
    cache: dict[str, Node | None] = {}

    def meaningOf(route: Route) -> Node | None:
        if route.name not in cache:
            cache[route.name] = meaning(route.rule, syntaxOf(route.name))
        return cache[route.name]

    shadowedOn: dict[str, list[tuple[str, Route]]] = {}
    servedOn: dict[str, int] = {}
    for entryPoint in sorted(tables):
        table = tables[entryPoint]
        for routes in (table.plain, table.secure):
            for index, route in enumerate(routes):
                if route.name.endswith("@internal"):
                    continue
                servedOn[route.name] = servedOn.get(route.name, 0) + 1
                mine = meaningOf(route)
                if mine is None:
                    continue
                for earlier in routes[:index]:
                    if earlier.name.endswith("@internal"):
                        continue
                    theirs = meaningOf(earlier)
                    if theirs is not None and implies(mine, theirs):
                        shadowedOn.setdefault(route.name, []).append((entryPoint, earlier))
                        break
    return {
        name: found for name, found in shadowedOn.items() if len(found) == servedOn[name]
    }


def shadowWarning(found: list[tuple[str, Route]]) -> str:
    """
    The status warning of a router that never matches.
    """
    shadowers: list[Route] = []
    for _, route in found:
        if route not in shadowers:
            shadowers.append(route)
    described = " and ".join(f'router "{r.name}" (priority {r.priority})' for r in shadowers)
    verb = "matches" if len(shadowers) == 1 else "match"
    return f"never matches: {described} {verb} every request it would, and is evaluated first"


def warnShadowed(tables: Mapping[str, RouteTable], routers: Mapping[str, Any], syntaxDefault: str) -> None:
    """
    Add the never-matches warning to the status of every shadowed router.

    @param routers: the routers' L{relayd.runtime.build.ObjectInfo} by name.
    """

    def syntaxOf(name: str) -> str:
        info = routers.get(name)
        syntax = getattr(getattr(info, "config", None), "ruleSyntax", "")
        return syntax or syntaxDefault

    for name, found in sorted(findShadowed(tables, syntaxOf).items()):
        routers[name].warn(shadowWarning(found))
