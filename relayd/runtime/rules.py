"""
The rule language: parse C{Host(`a.example`) && PathPrefix(`/api`)} into a tree,
compile it once into a matcher, and compute default priorities.

The grammar is the subset of Go expressions that Traefik accepts (it parses
rules with Go's own expression parser): calls of matcher names with string
literal arguments (backquoted raw strings or double-quoted strings with Go
escapes), combined with C{&&}, C{||}, unary C{!} and parentheses. C{&&} binds
tighter than C{||}. A C{!} over a group is pushed down to the matchers with De
Morgan's laws, as Traefik does. Matcher names are accepted as written, all
lower-case, all upper-case, or with only the first letter upper-case.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator, Literal, Mapping, TypeVar

import attrs

T = TypeVar("T")
Syntax = Literal["v2", "v3"]


class RuleError(ValueError):
    """
    A rule that cannot be parsed or compiled; the message says why.
    """


@attrs.frozen
class Leaf:
    """
    A matcher call: C{name} in its canonical spelling, its string arguments, and
    whether it is negated.
    """

    name: str
    args: tuple[str, ...]
    negated: bool = False


@attrs.frozen
class Branch:
    """
    C{left && right} (C{op="and"}) or C{left || right} (C{op="or"}).
    """

    op: Literal["and", "or"]
    left: Tree
    right: Tree


Tree = Leaf | Branch


def negate(tree: Tree) -> Tree:
    """
    Push a negation down to the leaves (De Morgan), as Traefik does.
    """
    if isinstance(tree, Branch):
        return Branch(
            op="or" if tree.op == "and" else "and",
            left=negate(tree.left),
            right=negate(tree.right),
        )
    return attrs.evolve(tree, negated=not tree.negated)


def leaves(tree: Tree) -> Iterator[Leaf]:
    if isinstance(tree, Branch):
        yield from leaves(tree.left)
        yield from leaves(tree.right)
    else:
        yield tree


# Lexer: a Go scanner reduced to the tokens a rule can contain.

_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_REST = _IDENT_START | set("0123456789")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


@attrs.frozen
class Token:
    kind: str  # ident, string, number, char, op, ";", eof
    text: str
    pos: int
    value: str = ""


def tokenize(rule: str) -> list[Token]:
    """
    Split a rule into tokens, inserting Go's automatic semicolon at a line end
    that follows an identifier, a literal or a closing parenthesis.
    """
    tokens: list[Token] = []
    i = 1 if rule.startswith("\ufeff") else 0  # Go's scanner skips a leading BOM
    n = len(rule)
    for position in range(i, n):
        c = rule[position]
        if c == "\x00":
            raise RuleError(f"{position + 1}: illegal character NUL")
        if c == "\ufeff":
            raise RuleError(f"{position + 1}: illegal byte order mark")
        if "\ud800" <= c <= "\udfff":
            raise RuleError(f"{position + 1}: illegal UTF-8 encoding")

    def lineEnd(pos: int) -> None:
        if tokens and (tokens[-1].kind in ("ident", "string", "number", "char") or tokens[-1].text == ")"):
            tokens.append(Token(";", "newline", pos))

    while i < n:
        c = rule[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            lineEnd(i)
            i += 1
        elif rule.startswith("//", i):
            end = rule.find("\n", i)
            i = n if end == -1 else end
        elif rule.startswith("/*", i):
            end = rule.find("*/", i + 2)
            if end == -1:
                raise RuleError(f"{i + 1}: comment not terminated")
            if "\n" in rule[i:end]:
                lineEnd(i)
            i = end + 2
        elif c in _IDENT_START or (c.isalpha() and not c.isascii()):
            start = i
            while i < n and (rule[i] in _IDENT_REST or (rule[i].isalnum() and not rule[i].isascii())):
                i += 1
            tokens.append(Token("ident", rule[start:i], start))
        elif c == "`":
            end = rule.find("`", i + 1)
            if end == -1:
                raise RuleError(f"{i + 1}: raw string literal not terminated")
            value = rule[i + 1:end].replace("\r", "")
            tokens.append(Token("string", rule[i:end + 1], i, value))
            i = end + 1
        elif c == '"':
            value, end = _interpretedString(rule, i)
            tokens.append(Token("string", rule[i:end], i, value))
            i = end
        elif c == "'":
            end = i + 1
            while end < n and rule[end] != "'" and rule[end] != "\n":
                end += 2 if rule[end] == "\\" else 1
            tokens.append(Token("char", rule[i:end + 1], i))
            i = end + 1
        elif c.isdigit() or (c == "." and i + 1 < n and rule[i + 1].isdigit()):
            start = i
            while i < n and (rule[i].isalnum() or rule[i] in "._"):
                i += 1
            tokens.append(Token("number", rule[start:i], start))
        else:
            for op in ("&&", "||", "==", "!=", "<=", ">=", "...", "(", ")", ",", "!", "<", ">", ".", "&", "|"):
                if rule.startswith(op, i):
                    tokens.append(Token("op", op, i))
                    i += len(op)
                    break
            else:
                raise RuleError(f"{i + 1}: unexpected character {c!r}")
    lineEnd(n)
    tokens.append(Token("eof", "", n))
    return tokens


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _interpretedString(rule: str, start: int) -> tuple[str, int]:
    """
    Decode a double-quoted Go string literal starting at C{start}, as
    C{strconv.Unquote} does: C{\\x} and octal escapes are single bytes, the
    other characters and C{\\u}/C{\\U} escapes are UTF-8, and the bytes are
    read back as UTF-8 (invalid bytes kept with C{surrogateescape}, as
    L{relayd.runtime.gocompat} does for request data).
    """
    out = bytearray()
    i = start + 1
    n = len(rule)
    while True:
        if i >= n or rule[i] == "\n":
            raise RuleError(f"{start + 1}: string literal not terminated")
        c = rule[i]
        if c == '"':
            return out.decode("utf-8", "surrogateescape"), i + 1
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            raise RuleError(f"{start + 1}: string literal not terminated")
        e = rule[i + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e].encode("ascii")
            i += 2
        elif e in "01234567":
            digits = rule[i + 1:i + 4]
            if len(digits) < 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise RuleError(f"{i + 1}: invalid octal escape in string literal")
            out.append(int(digits, 8))
            i += 4
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = rule[i + 2:i + 2 + width]
            valid = len(digits) == width and _HEX_DIGITS.issuperset(digits)
            code = int(digits, 16) if valid else -1
            if code < 0 or code > 0x10FFFF or (e != "x" and 0xD800 <= code <= 0xDFFF):
                raise RuleError(f"{i + 1}: invalid escape \\{e}{digits} in string literal")
            if e == "x":
                out.append(code)
            else:
                out += chr(code).encode("utf-8")
            i += 2 + width
        else:
            raise RuleError(f"{i + 1}: unknown escape sequence \\{e} in string literal")


# Parser


class _Parser:
    def __init__(self, rule: str, matchers: Mapping[str, str], checkArgs: bool = True) -> None:
        self.tokens = tokenize(rule)
        self.index = 0
        self.matchers = matchers
        self.checkArgs = checkArgs

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.token
        if token.text != text or token.kind not in ("op",):
            raise RuleError(f"{token.pos + 1}: expected '{text}', found {_show(token)}")
        return self.advance()

    def parse(self) -> Tree:
        if self.token.kind == "eof":
            raise RuleError("empty rule")
        tree = self.parseOr()
        if self.token.kind == ";" and self.tokens[self.index + 1].kind == "eof":
            self.advance()
        if self.token.kind != "eof":
            raise RuleError(f"{self.token.pos + 1}: expected end of rule, found {_show(self.token)}")
        return tree

    def parseOr(self) -> Tree:
        left = self.parseAnd()
        while self.token.kind == "op" and self.token.text == "||":
            self.advance()
            left = Branch("or", left, self.parseAnd())
        return left

    def parseAnd(self) -> Tree:
        left = self.parseComparison()
        while self.token.kind == "op" and self.token.text == "&&":
            self.advance()
            left = Branch("and", left, self.parseComparison())
        return left

    def parseComparison(self) -> Tree:
        left = self.parseUnary()
        if self.token.kind == "op" and self.token.text in ("==", "!=", "<", ">", "<=", ">=", "&", "|"):
            raise RuleError(f"{self.token.pos + 1}: operator {self.token.text} is not supported")
        return left

    def parseUnary(self) -> Tree:
        token = self.token
        if token.kind == "op" and token.text == "!":
            self.advance()
            return negate(self.parseUnary())
        if token.kind == "op" and token.text == "(":
            self.advance()
            tree = self.parseOr()
            self.expect(")")
            return tree
        if token.kind == "ident":
            return self.parseCall()
        if token.kind in ("string", "number", "char"):
            raise RuleError(
                f"{token.pos + 1}: expected a matcher such as Host(`example.com`), found {_show(token)}"
            )
        raise RuleError(f"{token.pos + 1}: expected a matcher, found {_show(token)}")

    def parseCall(self) -> Tree:
        nameToken = self.advance()
        name = nameToken.text
        while self.token.kind == "op" and self.token.text == ".":
            self.advance()
            if self.token.kind != "ident":
                raise RuleError(f"{self.token.pos + 1}: expected a name after '.'")
            name += "." + self.advance().text
        if not (self.token.kind == "op" and self.token.text == "("):
            raise RuleError(f"{nameToken.pos + 1}: {name} is not a matcher call; write {name}(`...`)")
        canonical = self.matchers.get(name)
        if canonical is None:
            raise RuleError(f"{nameToken.pos + 1}: unsupported matcher {name}")
        self.advance()
        args: list[str] = []
        while not (self.token.kind == "op" and self.token.text == ")"):
            token = self.token
            if token.kind == "string":
                args.append(token.value)
                self.advance()
            elif token.kind == "char":
                raise RuleError(
                    f"{token.pos + 1}: {canonical}: single quotes are not allowed; "
                    "use backquotes or double quotes"
                )
            elif token.kind == "eof" or token.kind == ";":
                raise RuleError(f"{token.pos + 1}: missing ')' after the arguments of {canonical}")
            else:
                raise RuleError(
                    f"{token.pos + 1}: {canonical}: arguments must be string literals, found {_show(token)}"
                )
            ellipsis = self.token.kind == "op" and self.token.text == "..."
            if ellipsis:
                # Go's call syntax f(a, b...) is accepted; predicate ignores the dots.
                self.advance()
            if self.token.kind == "op" and self.token.text == ",":
                self.advance()
            elif not (self.token.kind == "op" and self.token.text == ")"):
                raise RuleError(f"{self.token.pos + 1}: expected ',' or ')', found {_show(self.token)}")
            if ellipsis and not (self.token.kind == "op" and self.token.text == ")"):
                raise RuleError(f"{self.token.pos + 1}: expected ')' after '...', found {_show(self.token)}")
        self.advance()
        if not self.checkArgs:
            return Leaf(canonical, tuple(args))
        if not args:
            raise RuleError(f"no arguments for matcher {canonical}")
        if any(a == "" for a in args):
            raise RuleError(f"empty argument for matcher {canonical}")
        return Leaf(canonical, tuple(args))


def _show(token: Token) -> str:
    if token.kind == "eof":
        return "end of rule"
    if token.kind == ";":
        return "newline"
    return repr(token.text)


def nameVariants(names: list[str]) -> dict[str, str]:
    """
    The spellings Traefik accepts for each matcher name, mapped to the name.
    """
    variants: dict[str, str] = {}
    for name in names:
        for spelling in (name, name.lower(), name.upper(), name.lower().capitalize()):
            variants.setdefault(spelling, name)
    return variants


def parseTree(rule: str, matcherNames: list[str]) -> Tree:
    """
    Parse a rule against a set of matcher names.

    @raise RuleError: if the rule is not well formed.
    """
    return _Parser(rule, nameVariants(matcherNames)).parse()


# Compilation


Builder = Callable[[tuple[str, ...]], Callable[[T], bool]]


def compileTree(tree: Tree, builders: Mapping[str, Builder[T]]) -> Callable[[T], bool]:
    """
    Build the matcher function for a parsed tree.

    @raise RuleError: if a matcher rejects its arguments.
    """
    if isinstance(tree, Branch):
        left = compileTree(tree.left, builders)
        right = compileTree(tree.right, builders)
        if tree.op == "and":
            return lambda request: left(request) and right(request)
        return lambda request: left(request) or right(request)
    try:
        matcher = builders[tree.name](tree.args)
    except RuleError as e:
        raise RuleError(f"{tree.name}: {e}") from None
    if tree.negated:
        return lambda request: not matcher(request)
    return matcher


def defaultPriority(rule: str) -> int:
    """
    Traefik's default priority: the length of the rule. Go measures strings in
    bytes, so a rule with non-ASCII characters counts their UTF-8 bytes.
    """
    return len(rule.encode("utf-8", "surrogateescape"))


def defaultTCPPriority(rule: str) -> int:
    """
    Traefik's default priority of a TCP router: the length of the rule, except
    that a rule that is only C{HostSNI(`*`)} (in any accepted spelling, even
    negated) gets -1 so that the catch-all is evaluated last.
    """
    try:
        tree = _Parser(rule, nameVariants(["HostSNI"]), checkArgs=False).parse()
    except RuleError:
        return defaultPriority(rule)
    if isinstance(tree, Leaf) and tree.args == ("*",):
        return -1
    return defaultPriority(rule)


_V2_ONLY = {"Headers": "Header", "HeadersRegexp": "HeaderRegexp", "HostHeader": "Host"}
_V2_ONLY_VARIANTS = nameVariants(list(_V2_ONLY))
_UNSUPPORTED = re.compile(r"unsupported matcher (\S+)$")


def _compile(rule: str, syntax: str, builders: Mapping[str, Builder[T]]) -> Callable[[T], bool]:
    try:
        tree = parseTree(rule, list(builders))
    except RuleError as e:
        unknown = _UNSUPPORTED.search(str(e))
        old = unknown and _V2_ONLY_VARIANTS.get(unknown.group(1))
        if old and builders.keys() >= {"Header", "HeaderRegexp"}:
            raise RuleError(
                f"{e} ({old} is v2 syntax: use {_V2_ONLY[old]}, or set ruleSyntax to v2)"
            ) from None
        raise
    return compileTree(tree, builders)


def compileHTTPRule(rule: str, syntax: str = "v3") -> Callable[..., bool]:
    """
    Compile an HTTP router rule in the given syntax (C{v3} or C{v2}) into a
    function of a L{relayd.runtime.matchers.RouteRequest}.

    @raise RuleError: if the rule is invalid.
    """
    from relayd.runtime.matchers import HTTP_V2, HTTP_V3

    return _compile(rule, syntax, HTTP_V2 if syntax == "v2" else HTTP_V3)


def compileTCPRule(rule: str, syntax: str = "v3") -> Callable[..., bool]:
    """
    Compile a TCP router rule into a function of a
    L{relayd.runtime.matchers.ConnectionInfo}.

    @raise RuleError: if the rule is invalid.
    """
    from relayd.runtime.matchers import TCP_V2, TCP_V3

    return _compile(rule, syntax, TCP_V2 if syntax == "v2" else TCP_V3)


def hostsOf(rule: str) -> list[str]:
    """
    The lower-cased arguments of every Host matcher in a rule (for certificates
    and TLS options), or an empty list if the rule does not parse.
    """
    try:
        tree = parseTree(rule, ["Host", "HostHeader", "HostRegexp", "Path", "PathPrefix",
                                "PathRegexp", "Method", "Header", "HeaderRegexp", "Headers",
                                "HeadersRegexp", "Query", "QueryRegexp", "ClientIP"])
    except RuleError:
        return []
    return [a.lower() for leaf in leaves(tree) if leaf.name == "Host" for a in leaf.args]
