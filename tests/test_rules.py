"""
Tests for L{relayd.runtime.rules} (the rule parser) and
L{relayd.runtime.matchers} (HTTP and TCP matchers in the v3 and v2 syntaxes).

The facts (rule, request, expected match or error) come from Traefik's own test
tables (pkg/rules/parser_test.go, pkg/muxer/http/matcher_test.go, mux_test.go,
matcher_v2_test.go, pkg/muxer/tcp/matcher_test.go, mux_test.go and
matcher_v2_test.go at v3.6.24) and from reading its sources (vulcand/predicate
parses rules with Go's go/parser; gorilla/mux builds the v2 templates).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.runtime.matchers import (
    HTTP_V2,
    HTTP_V3,
    TCP_V2,
    TCP_V3,
    ConnectionInfo,
    IPChecker,
    RouteRequest,
    templateRegexp,
)
from relayd.runtime.routing import normalizePath, routeRequest
from relayd.runtime.rules import (
    Branch,
    Leaf,
    RuleError,
    Tree,
    compileHTTPRule,
    compileTCPRule,
    defaultPriority,
    defaultTCPPriority,
    hostsOf,
    negate,
    nameVariants,
    parseTree,
    tokenize,
)

HTTP_NAMES = list(HTTP_V3)
PROPERTY = settings(max_examples=150, deadline=None, database=None)


# Helpers


def headerLookup(headers: Mapping[str, str | Sequence[str]] | None) -> Callable[[str], list[str]]:
    """
    A case-insensitive lookup of all the values of a header, as the entrypoint
    builds it from the request.
    """
    table: dict[str, list[str]] = {}
    for name, values in (headers or {}).items():
        if isinstance(values, str):
            values = [values]
        table.setdefault(name.lower(), []).extend(values)
    return lambda name: table.get(name.lower(), [])


def request(
    url: str = "http://example.com/",
    method: str = "GET",
    headers: Mapping[str, str | Sequence[str]] | None = None,
    clientIP: str = "192.0.2.1",
) -> RouteRequest:
    """
    The matcher view of a request for C{url}, through the real path pipeline
    (normalizePath, then routeRequest).
    """
    parts = urlsplit(url)
    return routeRequest(
        host=parts.netloc,
        path=normalizePath(parts.path or "/"),
        rawQuery=parts.query,
        method=method,
        headers=headerLookup(headers),
        clientIP=clientIP,
    )


def connection(serverName: str = "", alpn: Sequence[str] = (), clientIP: str = "") -> ConnectionInfo:
    return ConnectionInfo(serverName=serverName, alpnProtocols=tuple(alpn), clientIP=clientIP)


def L(name: str, *args: str, negated: bool = False) -> Leaf:
    return Leaf(name, tuple(args), negated)


def AND(left: Tree, right: Tree) -> Branch:
    return Branch("and", left, right)


def OR(left: Tree, right: Tree) -> Branch:
    return Branch("or", left, right)


class RuleCase(SynchronousTestCase):
    """
    Assertions shared by the rule tests.
    """

    def assertHTTPTable(
        self, rule: str, table: Mapping[str, bool], syntax: str = "v3", **requestArgs: Any
    ) -> None:
        """
        The rule compiles and answers each URL of the table as expected.
        """
        matcher = compileHTTPRule(rule, syntax)
        got = {url: matcher(request(url, **requestArgs)) for url in table}
        self.assertEqual(got, dict(table), f"{rule} ({syntax})")

    def assertRequests(
        self, rule: str, cases: Iterable[tuple[RouteRequest, bool]], syntax: str = "v3"
    ) -> None:
        matcher = compileHTTPRule(rule, syntax)
        for req, expected in cases:
            self.assertEqual(matcher(req), expected, f"{rule} ({syntax}) on {req}")

    def assertHTTPError(self, rule: str, syntax: str = "v3") -> RuleError:
        return self.assertRaises(RuleError, compileHTTPRule, rule, syntax)

    def assertTCPError(self, rule: str, syntax: str = "v3") -> RuleError:
        return self.assertRaises(RuleError, compileTCPRule, rule, syntax)

    def assertParseError(self, rule: str, names: Sequence[str] = ("Host", "Path", "PathPrefix")) -> None:
        self.assertRaises(RuleError, parseTree, rule, list(names))


# The lexer and the string literals


class StringLiteralTests(RuleCase):
    """
    Rule arguments are Go string literals.
    """

    def value(self, literal: str) -> str:
        tree = parseTree(f"Path({literal})", ["Path"])
        assert isinstance(tree, Leaf)
        return tree.args[0]

    def test_backquotes(self) -> None:
        """
        A backquoted argument is taken verbatim, backslashes and double quotes included.
        """
        self.assertEqual(self.value(r"`/a\n\"b`"), '/a\\n\\"b')

    def test_rawStringMultiline(self) -> None:
        """
        A backquoted argument may span lines.
        """
        self.assertEqual(self.value("`/a\nb`"), "/a\nb")

    def test_rawStringDropsCarriageReturns(self) -> None:
        """
        Carriage returns inside a backquoted argument are dropped, as Go does for raw strings.
        """
        self.assertEqual(self.value("`/a\r\nb\r`"), "/a\nb")

    def test_doubleQuotesSimpleEscapes(self) -> None:
        """
        Double-quoted arguments interpret Go's single-character escapes.
        """
        self.assertEqual(
            self.value(r'"\a\b\f\n\r\t\v\\\""'), "\a\b\f\n\r\t\v\\\""
        )

    def test_doubleQuotesCarriageReturnKept(self) -> None:
        """
        A literal carriage return inside a double-quoted argument is kept.
        """
        self.assertEqual(self.value('"a\rb"'), "a\rb")

    def test_doubleQuotesNumericEscapes(self) -> None:
        r"""
        Octal, \x, \u and \U escapes give the characters they denote.
        """
        self.assertEqual(self.value(r'"\101\x41\u00e9\U0001F9AD"'), "AAé\U0001f9ad")

    def test_byteEscapesAreUTF8Bytes(self) -> None:
        r"""
        \x and octal escapes are bytes: two of them can spell one UTF-8 character.
        """
        self.assertEqual(self.value(r'"/\xc3\xa9"'), "/é")
        self.assertEqual(self.value(r'"/\303\251"'), "/é")

    def test_invalidByteEscapeKeptAsEscapedByte(self) -> None:
        r"""
        A \x escape that is not UTF-8 is kept as a surrogate-escaped byte, like request bytes.
        """
        self.assertEqual(self.value(r'"\xff"'), "\udcff")

    def test_invalidEscapes(self) -> None:
        """
        Escapes that Go's scanner rejects are errors.
        """
        for literal in [
            r'"\q"',
            r'"\'"',
            r'"\x4"',
            r'"\x4g"',
            r'"\x+1"',
            r'"\u00e"',
            r'"\u1_00"',
            r'"\400"',
            r'"\18"',
            r'"\uD800"',
            r'"\U00110000"',
            '"\\',
        ]:
            self.assertParseError(f"Path({literal})", ["Path"])

    def test_unterminatedStrings(self) -> None:
        """
        An unterminated literal, or a double-quoted one cut by a newline, is an error.
        """
        for rule in ["Path(`/a)", 'Path("/a)', 'Path("/a\nb")', "m(`1)"]:
            self.assertParseError(rule, ["Path", "m"])

    def test_singleQuotesRejected(self) -> None:
        """
        Single-quoted arguments are rejected (Go reads them as runes, not strings).
        """
        for rule in ["Host('a')", "Host('example.com')", "Host(`a`, 'b')"]:
            error = self.assertRaises(RuleError, parseTree, rule, ["Host"])
            self.assertIn("quote", str(error))

    def test_illegalCharacters(self) -> None:
        """
        NUL characters and byte order marks after the start are illegal anywhere, even in strings.
        """
        for rule in ["Host(`a\x00`)", "Host(`a`)\x00", "Host(`a\ufeff`)", "Host(`a`) \ufeff"]:
            self.assertParseError(rule, ["Host"])

    def test_leadingByteOrderMark(self) -> None:
        """
        A byte order mark at the very start is skipped, as Go's scanner does.
        """
        self.assertEqual(parseTree("\ufeffHost(`a`)", ["Host"]), L("Host", "a"))

    def test_tokenizeInsertsSemicolons(self) -> None:
        """
        The lexer inserts Go's automatic semicolon after a closing parenthesis at a line end.
        """
        kinds = [t.kind for t in tokenize("Host(`a`)\n")]
        self.assertEqual(kinds, ["ident", "op", "string", "op", ";", "eof"])
        kinds = [t.kind for t in tokenize("Host(`a`) &&\n")]
        self.assertEqual(kinds, ["ident", "op", "string", "op", "op", "eof"])


# The parser


class ParseTreeTests(RuleCase):
    """
    The tree parseTree builds, and the rules it rejects.
    """

    def test_oneMatcher(self) -> None:
        """
        A single call gives a leaf with the canonical name and its arguments.
        """
        self.assertEqual(parseTree("m(`1`)", ["m"]), L("m", "1"))
        self.assertEqual(parseTree("m(`1`, `2`)", ["m"]), L("m", "1", "2"))

    def test_superfluousParentheses(self) -> None:
        """
        Parentheses around a call change nothing.
        """
        self.assertEqual(parseTree("(m(`1`))", ["m"]), L("m", "1"))
        self.assertEqual(parseTree("(((m(`1`))))", ["m"]), L("m", "1"))

    def test_andOr(self) -> None:
        """
        && and || give and/or branches.
        """
        self.assertEqual(parseTree("m(`1`) && m(`2`)", ["m"]), AND(L("m", "1"), L("m", "2")))
        self.assertEqual(parseTree("m(`1`) || m(`2`)", ["m"]), OR(L("m", "1"), L("m", "2")))

    def test_andBindsTighterThanOr(self) -> None:
        """
        && binds tighter than ||, on either side.
        """
        a, b, c = L("m", "a"), L("m", "b"), L("m", "c")
        self.assertEqual(parseTree("m(`a`) || m(`b`) && m(`c`)", ["m"]), OR(a, AND(b, c)))
        self.assertEqual(parseTree("m(`a`) && m(`b`) || m(`c`)", ["m"]), OR(AND(a, b), c))

    def test_leftAssociative(self) -> None:
        """
        A chain of the same operator groups from the left, as Go's binary operators do.
        """
        a, b, c = L("m", "a"), L("m", "b"), L("m", "c")
        self.assertEqual(parseTree("m(`a`) && m(`b`) && m(`c`)", ["m"]), AND(AND(a, b), c))
        self.assertEqual(parseTree("m(`a`) || m(`b`) || m(`c`)", ["m"]), OR(OR(a, b), c))

    def test_parenthesesGroup(self) -> None:
        """
        Parentheses override precedence.
        """
        a, b, c = L("m", "a"), L("m", "b"), L("m", "c")
        self.assertEqual(parseTree("(m(`a`) || m(`b`)) && m(`c`)", ["m"]), AND(OR(a, b), c))
        self.assertEqual(parseTree("m(`a`) && (m(`b`) || m(`c`))", ["m"]), AND(a, OR(b, c)))

    def test_notOnOneMatcher(self) -> None:
        """
        ! on a call negates the leaf.
        """
        self.assertEqual(parseTree("!m(`1`)", ["m"]), L("m", "1", negated=True))

    def test_notDeMorgan(self) -> None:
        """
        ! over a group is pushed down to the leaves with De Morgan's laws.
        """
        self.assertEqual(
            parseTree("!(m(`1`) && m(`2`))", ["m"]),
            OR(L("m", "1", negated=True), L("m", "2", negated=True)),
        )
        self.assertEqual(
            parseTree("!(m(`1`) || m(`2`))", ["m"]),
            AND(L("m", "1", negated=True), L("m", "2", negated=True)),
        )
        self.assertEqual(
            parseTree("!(m(`1`) && !m(`2`))", ["m"]),
            OR(L("m", "1", negated=True), L("m", "2")),
        )

    def test_doubleNot(self) -> None:
        """
        Two negations cancel out.
        """
        self.assertEqual(parseTree("!!m(`1`)", ["m"]), L("m", "1"))
        self.assertEqual(
            parseTree("!(!(m(`1`) && m(`2`)))", ["m"]), AND(L("m", "1"), L("m", "2"))
        )

    def test_notBindsTighterThanAnd(self) -> None:
        """
        ! applies to the operand right after it only.
        """
        self.assertEqual(
            parseTree("!m(`1`) && m(`2`)", ["m"]), AND(L("m", "1", negated=True), L("m", "2"))
        )

    def test_nameCasings(self) -> None:
        """
        Names are accepted as written, all lower-case, all upper-case and Title-case of the lower-case form.
        """
        names = ["Host", "PathPrefix", "HostRegexp", "ClientIP", "HeaderRegexp"]
        for spelling, canonical in [
            ("PathPrefix", "PathPrefix"),
            ("pathprefix", "PathPrefix"),
            ("PATHPREFIX", "PathPrefix"),
            ("Pathprefix", "PathPrefix"),
            ("host", "Host"),
            ("HOST", "Host"),
            ("Hostregexp", "HostRegexp"),
            ("Clientip", "ClientIP"),
            ("CLIENTIP", "ClientIP"),
            ("clientip", "ClientIP"),
            ("Headerregexp", "HeaderRegexp"),
        ]:
            self.assertEqual(parseTree(f"{spelling}(`x`)", names), L(canonical, "x"), spelling)

    def test_otherCasingsRejected(self) -> None:
        """
        Mixed casings other than the four accepted ones are unknown matchers.
        """
        names = ["Host", "PathPrefix", "ClientIP", "HostRegexp"]
        for spelling in ["pathPrefix", "PAthPrefix", "hOST", "hosT", "ClientIp", "clientIP", "Hostregexp_"]:
            self.assertParseError(f"{spelling}(`x`)", names)

    def test_nameVariants(self) -> None:
        """
        nameVariants maps the four spellings of each name to the name.
        """
        self.assertEqual(
            nameVariants(["PathPrefix"]),
            {
                "PathPrefix": "PathPrefix",
                "pathprefix": "PathPrefix",
                "PATHPREFIX": "PathPrefix",
                "Pathprefix": "PathPrefix",
            },
        )

    def test_noArguments(self) -> None:
        """
        A matcher without arguments is an error.
        """
        for rule in ["m()", "m(`1`) && m()", "Host() && Path(`/test`)"]:
            self.assertParseError(rule, ["m", "Host", "Path"])

    def test_emptyArgument(self) -> None:
        """
        An empty argument is an error, whichever quotes are used.
        """
        for rule in ["m(``)", 'm("")', "m(`1`, ``)", "m(``, `1`)"]:
            self.assertParseError(rule, ["m"])

    def test_trailingComma(self) -> None:
        """
        A trailing comma after the last argument is accepted, even before a newline.
        """
        self.assertEqual(parseTree("m(`1`, `2`,)", ["m"]), L("m", "1", "2"))
        self.assertEqual(parseTree("m(\n`1`,\n`2`,\n)", ["m"]), L("m", "1", "2"))

    def test_ellipsis(self) -> None:
        """
        Go's variadic call syntax m(`a`...) is accepted and means m(`a`).
        """
        self.assertEqual(parseTree("m(`1`...)", ["m"]), L("m", "1"))
        self.assertEqual(parseTree("m(`1`, `2`...,)", ["m"]), L("m", "1", "2"))
        self.assertParseError("m(`1`..., `2`)", ["m"])
        self.assertParseError("m(...)", ["m"])

    def test_whitespace(self) -> None:
        """
        Spaces and tabs may surround every token.
        """
        self.assertEqual(parseTree("   m ( `*` )       ", ["m"]), L("m", "*"))
        self.assertEqual(parseTree("\tm(`a`)\t&&\tm(`b`)", ["m"]), AND(L("m", "a"), L("m", "b")))

    def test_newlineAfterOperatorAccepted(self) -> None:
        """
        A newline after && or || (or after an opening parenthesis or a !) is fine.
        """
        self.assertEqual(parseTree("m(`a`) &&\nm(`b`)", ["m"]), AND(L("m", "a"), L("m", "b")))
        self.assertEqual(parseTree("m(`a`) ||\n\n  m(`b`)", ["m"]), OR(L("m", "a"), L("m", "b")))
        self.assertEqual(parseTree("(\nm(`a`))", ["m"]), L("m", "a"))
        self.assertEqual(parseTree("!\nm(`a`)", ["m"]), L("m", "a", negated=True))

    def test_newlineBeforeOperatorRejected(self) -> None:
        """
        A newline after a closing parenthesis ends the expression (Go's automatic semicolon): an operator on the next line is an error.
        """
        for rule in [
            "m(`a`)\n&& m(`b`)",
            "m(`a`)\n|| m(`b`)",
            "(m(`a`)\n)",
            "m\n(`a`)",
            "m(`a`\n)",
            "m(`a`) // comment\n&& m(`b`)",
            "m(`a`) /* two\nlines */ && m(`b`)",
        ]:
            self.assertParseError(rule, ["m"])

    def test_trailingNewline(self) -> None:
        """
        Trailing newlines (and a trailing line comment) are fine.
        """
        for rule in ["m(`a`)\n", "m(`a`)\n\n", "\nm(`a`)", "m(`a`) // done", "m(`a`) // done\n"]:
            self.assertEqual(parseTree(rule, ["m"]), L("m", "a"), repr(rule))

    def test_comments(self) -> None:
        """
        Go comments are whitespace; an unterminated block comment is an error.
        """
        self.assertEqual(
            parseTree("/* x */ m(`a`) /* y */ && m(`b`)", ["m"]), AND(L("m", "a"), L("m", "b"))
        )
        self.assertParseError("m(`a`) /* never closed", ["m"])

    def test_unsupportedOperators(self) -> None:
        """
        Only &&, || and ! are operators; ==, !=, <, &, |, + and an explicit semicolon are errors.
        """
        for rule in [
            "m(`a`) == m(`b`)",
            "m(`a`) != m(`b`)",
            "m(`a`) < m(`b`)",
            "m(`a`) >= m(`b`)",
            "m(`a`) & m(`b`)",
            "m(`a`) | m(`b`)",
            "m(`a`) + m(`b`)",
            "-m(`a`)",
            "m(`a`);",
            "m(`a`); m(`b`)",
        ]:
            self.assertParseError(rule, ["m"])

    def test_malformed(self) -> None:
        """
        Incomplete or unbalanced rules are errors.
        """
        for rule in [
            "",
            "   ",
            "\n",
            "m(`1`) &&",
            "m(`1`) ||",
            "m(`1`))",
            "(m(`1`)",
            "m(`1`",
            "m(`1` `2`)",
            "!",
            "()",
            "m(`1`) m(`2`)",
            "m(`1`)(`2`)",
            "m(`1`)[0]",
            "m(`1`).x",
        ]:
            self.assertParseError(rule, ["m"])

    def test_notAMatcher(self) -> None:
        """
        Unknown names, bare names, identifiers, numbers, nested calls and selectors are errors.
        """
        for rule in [
            "w(`1`)",
            "rulewithnotmatcher",
            "Host",
            "Host(example.com)",
            "Host(tchouk)",
            "Host(1)",
            "Host(1.5)",
            "Host(0x1)",
            "Host(Path(`/a`))",
            "Host((`a`))",
            "Host(!`a`)",
            "a.Host(`a`)",
            "(Host)(`a`)",
            "`a`",
            "!`a`",
            "Host(`a`) && `b`",
            "Foobar(`foo.bar`,`test.bar`)",
        ]:
            self.assertParseError(rule, ["Host", "Path"])

    def test_matchersOfTheSyntax(self) -> None:
        """
        Each syntax knows only its own matchers.
        """
        self.assertHTTPError("HostSNI(`a`)")
        self.assertTCPError("Host(`a`)")
        self.assertHTTPError("QueryRegexp(`a`, `b`)", "v2")
        self.assertHTTPError("PathRegexp(`^/a`)", "v2")


class SyntaxSelectionTests(RuleCase):
    """
    compileHTTPRule and compileTCPRule choose the matchers from ruleSyntax.
    """

    def test_v2OnlyNamesHint(self) -> None:
        """
        A v2-only matcher in a v3 rule is an error whose message names the v3 replacement and ruleSyntax.
        """
        for rule, replacement in [
            ("Headers(`X-A`, `b`)", "Header"),
            ("headers(`X-A`, `b`)", "Header"),
            ("HeadersRegexp(`X-A`, `b`)", "HeaderRegexp"),
            ("HostHeader(`a.com`)", "Host"),
        ]:
            message = str(self.assertHTTPError(rule))
            self.assertIn(f"use {replacement}", message)
            self.assertIn("ruleSyntax", message)

    def test_v2Accepted(self) -> None:
        """
        The same v2 rules compile with ruleSyntax v2.
        """
        for rule in ["Headers(`X-A`, `b`)", "HeadersRegexp(`X-A`, `b`)", "HostHeader(`a.com`)"]:
            compileHTTPRule(rule, "v2")

    def test_unknownSyntaxIsV3(self) -> None:
        """
        A syntax other than v2 (empty, default, V2) uses the v3 matchers, as Traefik falls back to v3.
        """
        for syntax in ["", "default", "V2", "v3"]:
            self.assertHTTPError("Host(`a`, `b`)", syntax)
            compileHTTPRule("Header(`X-A`, `b`)", syntax)
            self.assertTCPError("HostSNI(`a`, `b`)", syntax)

    def test_multipleArgumentsOnlyInV2(self) -> None:
        """
        Several arguments are an OR in v2 and an error in v3.
        """
        for rule in [
            "Host(`a`, `b`)",
            "Path(`/a`, `/b`)",
            "PathPrefix(`/a`, `/b`)",
            "Method(`GET`, `POST`)",
            "ClientIP(`127.0.0.1`, `192.168.1.0/24`)",
            "HostRegexp(`a`, `b`)",
        ]:
            self.assertHTTPError(rule)
            compileHTTPRule(rule, "v2")


# Property tests of the parser


@attrs.frozen
class Not:
    child: Any


def _expected(tree: Any, negated: bool = False) -> Tree:
    """
    The tree the parser must give for an abstract tree: negations pushed to the leaves.
    """
    if isinstance(tree, Not):
        return _expected(tree.child, not negated)
    if isinstance(tree, Branch):
        op = tree.op
        if negated:
            op = "or" if op == "and" else "and"
        return Branch(op, _expected(tree.left, negated), _expected(tree.right, negated))
    return attrs.evolve(tree, negated=tree.negated != negated)


def goQuote(data: st.DataObject, value: str) -> str:
    """
    Render a string as a Go literal, drawing the quoting style and escapes.
    """
    if "`" not in value and "\r" not in value and data.draw(st.booleans()):
        return f"`{value}`"
    out = []
    for c in value:
        code = ord(c)
        style = data.draw(st.integers(0, 3))
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c in "\n\r\t" and style < 2:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        elif code < 0x80 and style == 1:
            out.append(f"\\x{code:02x}" if data.draw(st.booleans()) else f"\\{code:03o}")
        elif code <= 0xFFFF and style == 2:
            out.append(f"\\u{code:04X}")
        elif style == 3 or c in "\n":
            out.append(f"\\U{code:08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


ARGS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"),
    min_size=1,
    max_size=6,
)
ARITY = {"Host": 1, "Path": 1, "PathPrefix": 1, "Method": 1, "Header": 2, "Query": 1, "ClientIP": 1}
LEAVES = st.sampled_from(sorted(ARITY)).flatmap(
    lambda name: st.builds(lambda args: Leaf(name, tuple(args)), st.lists(ARGS, min_size=ARITY[name], max_size=2))
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(Branch, st.sampled_from(["and", "or"]), children, children),
    ),
    max_leaves=8,
)
LEVELS = {"or": 1, "and": 2}


def render(data: st.DataObject, tree: Any) -> tuple[str, int]:
    """
    Render an abstract tree as rule text with the minimum parentheses (and
    sometimes more), random name casings, spaces and newlines where Go allows
    them. Returns the text and its precedence level (3 for an operand).
    """
    space = lambda: data.draw(st.sampled_from(["", " ", "  ", "\t"]))  # noqa: E731
    if isinstance(tree, Leaf):
        spelling = data.draw(st.sampled_from(sorted(set(nameVariants([tree.name])))))
        args = f",{space()}".join(goQuote(data, a) for a in tree.args)
        text, level = f"{spelling}{space()}({space()}{args}{space()})", 3
    elif isinstance(tree, Not):
        child, childLevel = render(data, tree.child)
        if childLevel < 3:
            child = f"({child})"
        text, level = f"!{space()}{child}", 3
    else:
        level = LEVELS[tree.op]
        left, leftLevel = render(data, tree.left)
        right, rightLevel = render(data, tree.right)
        if leftLevel < level:
            left = f"({left})"
        if rightLevel <= level:
            right = f"({right})"
        operator = "&&" if tree.op == "and" else "||"
        newline = data.draw(st.sampled_from(["", "\n"]))
        text = f"{left}{space()}{operator}{newline}{space()}{right}"
    if data.draw(st.integers(0, 5)) == 0:
        text, level = f"({space()}{text}{space()})", 3
    return text, level


class ParserPropertyTests(RuleCase):
    """
    Property tests: rendering a tree and parsing it back.
    """

    @PROPERTY
    @given(st.data(), TREES)
    def test_renderParseRoundTrip(self, data: st.DataObject, tree: Any) -> None:
        """
        Rendering a random tree of matchers to text and parsing it gives the tree with negations pushed down by De Morgan.
        """
        text, _ = render(data, tree)
        self.assertEqual(parseTree(text, HTTP_NAMES), _expected(tree))

    @PROPERTY
    @given(st.data(), TREES)
    def test_negatedRule(self, data: st.DataObject, tree: Any) -> None:
        """
        Parsing !(rule) gives the negation of the parsed rule.
        """
        text, _ = render(data, tree)
        self.assertEqual(parseTree(f"!({text})", HTTP_NAMES), negate(parseTree(text, HTTP_NAMES)))

    @PROPERTY
    @given(TREES)
    def test_doubleNegationIsIdentity(self, tree: Any) -> None:
        """
        Negating a tree twice gives it back, and negating once changes every leaf.
        """
        normal = _expected(tree)
        self.assertEqual(negate(negate(normal)), normal)
        self.assertEqual(negate(normal), _expected(Not(tree)))

    @PROPERTY
    @given(st.data(), ARGS)
    def test_stringLiteralRoundTrip(self, data: st.DataObject, value: str) -> None:
        """
        Any string rendered as a Go literal (raw or interpreted, with any escapes) parses back to itself.
        """
        literal = goQuote(data, value)
        tree = parseTree(f"Path({literal})", ["Path"])
        self.assertEqual(tree, L("Path", value))

    @PROPERTY
    @given(st.data(), TREES)
    def test_defaultPriorityIsByteLength(self, data: st.DataObject, tree: Any) -> None:
        """
        The default priority of any rule is its length in UTF-8 bytes.
        """
        text, _ = render(data, tree)
        self.assertEqual(defaultPriority(text), len(text.encode("utf-8")))

    @PROPERTY
    @given(
        st.data(),
        st.recursive(
            st.sampled_from(
                [
                    Leaf("Host", ("a.com",)),
                    Leaf("Host", ("b.com",)),
                    Leaf("Path", ("/x",)),
                    Leaf("PathPrefix", ("/y",)),
                    Leaf("Method", ("post",)),
                ]
            ),
            lambda children: st.one_of(
                st.builds(Not, children),
                st.builds(Branch, st.sampled_from(["and", "or"]), children, children),
            ),
            max_leaves=6,
        ),
        st.sampled_from(["a.com", "B.com:8080", "c.com"]),
        st.sampled_from(["/x", "/y/z", "/"]),
        st.sampled_from(["GET", "POST"]),
    )
    def test_compiledRuleEvaluatesTree(
        self, data: st.DataObject, tree: Any, host: str, path: str, method: str
    ) -> None:
        """
        A compiled rule answers what the boolean formula of its tree says for the request.
        """

        def evaluate(node: Any) -> bool:
            if isinstance(node, Not):
                return not evaluate(node.child)
            if isinstance(node, Branch):
                if node.op == "and":
                    return evaluate(node.left) and evaluate(node.right)
                return evaluate(node.left) or evaluate(node.right)
            value = node.args[0]
            return {
                "Host": host.split(":")[0].lower() == value,
                "Path": path == value,
                "PathPrefix": path.startswith(value),
                "Method": method == value.upper(),
            }[node.name]

        text, _ = render(data, tree)
        matcher = compileHTTPRule(text)
        self.assertEqual(matcher(request(f"http://{host}{path}", method=method)), evaluate(tree))


# HTTP matchers, v3 syntax


class ClientIPMatcherTests(RuleCase):
    """
    ClientIP in the v3 syntax (one IP or CIDR, remote address only).
    """

    def test_errors(self) -> None:
        """
        Invalid addresses, no argument, an empty one and two arguments are errors.
        """
        for rule in [
            "ClientIP(`1`)",
            "ClientIP()",
            "ClientIP(``)",
            "ClientIP(`127.0.0.1`, `192.168.1.0/24`)",
            "ClientIP(`invalid`)",
            "ClientIP(`🦭/32`)",
            "ClientIP(`10.0.0.0/33`)",
            "ClientIP(`10.0.0.0/255.0.0.0`)",
            "ClientIP(`10.0.0.0/`)",
            "ClientIP(`fe80::1%eth0`)",
            "ClientIP(`01.2.3.4`)",
        ]:
            self.assertHTTPError(rule)

    def test_ip(self) -> None:
        """
        A single IP matches only that remote address; an unparsable remote address never matches.
        """
        matcher = compileHTTPRule("ClientIP(`127.0.0.1`)")
        for clientIP, expected in [("127.0.0.1", True), ("192.168.1.1", False), ("1", False), ("", False)]:
            self.assertEqual(matcher(request(clientIP=clientIP)), expected, clientIP)

    def test_cidr(self) -> None:
        """
        A CIDR range matches the addresses inside it.
        """
        matcher = compileHTTPRule("ClientIP(`192.168.1.0/24`)")
        for clientIP, expected in [
            ("192.168.1.1", True),
            ("192.168.1.100", True),
            ("192.168.2.1", False),
        ]:
            self.assertEqual(matcher(request(clientIP=clientIP)), expected, clientIP)

    def test_hostBitsIgnored(self) -> None:
        """
        A CIDR with host bits set is the range of its network, as Go's ParseCIDR gives.
        """
        matcher = compileHTTPRule("ClientIP(`20.20.20.20/24`)")
        self.assertTrue(matcher(request(clientIP="20.20.20.40")))
        self.assertFalse(matcher(request(clientIP="20.20.21.1")))

    def test_ipv6(self) -> None:
        """
        IPv6 addresses and ranges match IPv6 remote addresses.
        """
        for rule, clientIP, expected in [
            ("ClientIP(`10::10`)", "10::10", True),
            ("ClientIP(`10::10`)", "::1", False),
            ("ClientIP(`10::/16`)", "10::10", True),
            ("ClientIP(`11::/16`)", "10::", False),
            ("ClientIP(`fe80::/10`)", "fe80::1%eth0", True),
        ]:
            self.assertEqual(compileHTTPRule(rule)(request(clientIP=clientIP)), expected, (rule, clientIP))

    def test_ipv4Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address is the IPv4 address, on either side, and a mapped range behaves as an IPv4 range.
        """
        for rule, clientIP, expected in [
            ("ClientIP(`10.0.0.1`)", "::ffff:10.0.0.1", True),
            ("ClientIP(`::ffff:10.0.0.1`)", "10.0.0.1", True),
            ("ClientIP(`10.0.0.0/8`)", "::ffff:10.1.2.3", True),
            ("ClientIP(`::ffff:10.0.0.0/104`)", "10.1.2.3", True),
            ("ClientIP(`::ffff:10.0.0.0/104`)", "11.1.2.3", False),
            ("ClientIP(`::ffff:0:0/96`)", "192.0.2.1", True),
            ("ClientIP(`::ffff:0:0/96`)", "2001:db8::1", False),
            ("ClientIP(`::/0`)", "192.0.2.1", False),
            ("ClientIP(`::/0`)", "::ffff:192.0.2.1", False),
            ("ClientIP(`0.0.0.0/0`)", "2001:db8::1", False),
        ]:
            self.assertEqual(compileHTTPRule(rule)(request(clientIP=clientIP)), expected, (rule, clientIP))

    def test_remoteAddressOnly(self) -> None:
        """
        X-Forwarded-For and X-Real-Ip are never consulted.
        """
        matcher = compileHTTPRule("ClientIP(`10.0.0.1`)")
        headers = {"X-Forwarded-For": "10.0.0.1", "X-Real-Ip": "10.0.0.1"}
        self.assertFalse(matcher(request(headers=headers, clientIP="192.0.2.7")))
        self.assertTrue(matcher(request(headers={"X-Forwarded-For": "1.1.1.1"}, clientIP="10.0.0.1")))

    def test_checker(self) -> None:
        """
        IPChecker needs at least one value and matches addresses or ranges.
        """
        self.assertRaises(RuleError, IPChecker.fromStrings, [])
        checker = IPChecker.fromStrings(["11.0.0.0", "10.0.0.0/16"])
        self.assertTrue(checker.contains("10.0.200.1"))
        self.assertTrue(checker.contains("11.0.0.0"))
        self.assertFalse(checker.contains("11.0.0.1"))
        self.assertFalse(checker.contains("not.an.ip"))
        self.assertFalse(checker.contains("10.0.0.1%eth0"))


class MethodMatcherTests(RuleCase):
    """
    Method in the v3 syntax.
    """

    def test_errors(self) -> None:
        """
        No argument, an empty one or two arguments are errors.
        """
        for rule in ["Method()", "Method(``)", "Method(`GET`, `POST`)"]:
            self.assertHTTPError(rule)

    def test_method(self) -> None:
        """
        The argument is upper-cased and compared exactly with the request method.
        """
        for rule in ["Method(`GET`)", "Method(`get`)"]:
            matcher = compileHTTPRule(rule)
            for method, expected in [("GET", True), ("POST", False), ("get", False)]:
                self.assertEqual(matcher(request(method=method)), expected, (rule, method))


class HostMatcherTests(RuleCase):
    """
    Host in the v3 syntax.
    """

    def test_errors(self) -> None:
        """
        No argument, an empty one, non-ASCII and two arguments are errors.
        """
        for rule in ["Host()", "Host(``)", "Host(`🦭.com`)", "Host(`locàlhost`)", "Host(`example.com`, `example.org`)"]:
            self.assertHTTPError(rule)

    def test_host(self) -> None:
        """
        The host is compared lower-cased and without port.
        """
        self.assertHTTPTable(
            "Host(`example.com`)",
            {
                "https://example.com": True,
                "https://example.com:8080": True,
                "https://example.com/path": True,
                "https://EXAMPLE.COM/path": True,
                "https://example.org": False,
                "https://example.org/path": False,
                "https://sub.example.com": False,
                "https://example.com.org": False,
            },
        )

    def test_upperCaseArgument(self) -> None:
        """
        The argument is lower-cased.
        """
        self.assertHTTPTable(
            "Host(`EXAMPLE.COM`)",
            {"https://example.com": True, "https://example.com/path": True, "https://example.org": False},
        )

    def test_trailingDotInRule(self) -> None:
        """
        A trailing dot in the rule matches hosts with or without it.
        """
        self.assertHTTPTable(
            "Host(`example.com.`)",
            {
                "https://example.com": True,
                "https://example.com/path": True,
                "https://example.org": False,
                "https://example.com.": True,
                "https://example.com./path": True,
                "https://example.org.": False,
            },
        )

    def test_trailingDotInRequest(self) -> None:
        """
        A trailing dot in the request host matches a rule without it.
        """
        self.assertHTTPTable(
            "Host(`example.com`)",
            {"https://example.com.": True, "https://example.com./path": True, "https://example.org.": False},
        )

    def test_punycode(self) -> None:
        """
        Punycode hosts match punycode requests only.
        """
        self.assertHTTPTable(
            "Host(`xn--9t9h.com`)",
            {
                "https://xn--9t9h.com": True,
                "https://xn--9t9h.com/path": True,
                "https://example.com": False,
                "https://🦭.com": False,
            },
        )

    def test_ipHosts(self) -> None:
        """
        IPv4 hosts match, and IPv6 hosts match without their brackets, with or without port.
        """
        self.assertHTTPTable("Host(`127.0.0.1`)", {"http://127.0.0.1/foo": True, "http://127.0.0.1:80/": True})
        self.assertHTTPTable(
            "Host(`10::10`)",
            {"http://[10::10]/foo": True, "http://[10::10]:8080/foo": True, "http://[10::11]/": False},
        )

    def test_emptyHostNeverMatches(self) -> None:
        """
        A request without host matches no Host rule, so the negated rule matches it.
        """
        self.assertFalse(compileHTTPRule("Host(`example.com`)")(request("http:///a")))
        self.assertTrue(compileHTTPRule("!Host(`example.com`)")(request("http:///a")))


class HostRegexpMatcherTests(RuleCase):
    """
    HostRegexp in the v3 syntax.
    """

    def test_errors(self) -> None:
        """
        No argument, an empty one, non-ASCII, an invalid regexp and two arguments are errors.
        """
        for rule in [
            "HostRegexp()",
            "HostRegexp(``)",
            "HostRegexp(`🦭.com`)",
            "HostRegexp(`locàlhost`)",
            "HostRegexp(`(example.com`)",
            "HostRegexp(`example.com`, `example.org`)",
            "HostRegexp(`^(?=a)`)",
        ]:
            self.assertHTTPError(rule)

    def test_regexp(self) -> None:
        """
        The regexp is matched against the lower-cased host without port.
        """
        self.assertHTTPTable(
            r"HostRegexp(`^[a-zA-Z-]+\.com$`)",
            {
                "https://example.com": True,
                "https://example.com:8080": True,
                "https://EXAMPLE.com/path": True,
                "https://example.org": False,
            },
        )

    def test_caseSensitiveRegexp(self) -> None:
        """
        The host is lower-cased before matching, so upper-case classes never match letters.
        """
        self.assertHTTPTable(
            r"HostRegexp(`^[A-Z]+\.com$`)",
            {"https://example.com": False, "https://EXAMPLE.com": False, "https://example.org": False},
        )
        self.assertHTTPTable(r"HostRegexp(`(?i)^EXAMPLE\.com$`)", {"https://Example.com": True})

    def test_unanchored(self) -> None:
        """
        The regexp is not anchored.
        """
        self.assertHTTPTable(
            r"HostRegexp(`example\.com`)",
            {"https://sub.example.com": True, "https://example.com.org": True, "https://example.org": False},
        )

    def test_v2TemplateIsPlainRegexp(self) -> None:
        """
        A v2 template is read as a regexp in v3, so braces are literal and it does not match hosts.
        """
        self.assertHTTPTable(
            r"HostRegexp(`{domain:[a-zA-Z-]+\.com}`)",
            {"https://example.com": False, "https://example.org/path": False},
        )

    def test_regexpMatchingEmptyMatchesAll(self) -> None:
        """
        A regexp that matches the empty string matches every request, as Traefik also tries the (empty) CNAME-flattened host.
        """
        self.assertHTTPTable(
            r"HostRegexp(`^(foo\.com)?$`)",
            {"http://foo.com": True, "http://bar.com": True, "http:///": True},
        )
        self.assertHTTPTable(r"HostRegexp(`^$`)", {"http://bar.com": True})
        self.assertHTTPTable(r"HostRegexp(`^foo\.com$`)", {"http:///": False, "http://bar.com": False})


class PathMatcherTests(RuleCase):
    """
    Path, PathPrefix and PathRegexp in the v3 syntax, on the routing path.
    """

    def test_errors(self) -> None:
        """
        No argument, an empty one, a path without leading slash, a bad regexp and two arguments are errors.
        """
        for rule in [
            "Path()",
            "Path(``)",
            "Path(`css`)",
            "Path(`/css`, `/js`)",
            "PathPrefix()",
            "PathPrefix(``)",
            "PathPrefix(`css`)",
            "PathPrefix(`/css`, `/js`)",
            "PathRegexp()",
            "PathRegexp(``)",
            "PathRegexp(`/(css`)",
            "PathRegexp(`/css`, `/js`)",
            r"PathRegexp(`(a)\1`)",
        ]:
            self.assertHTTPError(rule)

    def test_path(self) -> None:
        """
        Path is an exact comparison.
        """
        self.assertHTTPTable(
            "Path(`/css`)",
            {
                "https://example.com": False,
                "https://example.com/html": False,
                "https://example.org/css": True,
                "https://example.com/css": True,
                "https://example.com/css/": False,
                "https://example.com/css/main.css": False,
                "https://example.com/CSS": False,
            },
        )

    def test_pathPrefix(self) -> None:
        """
        PathPrefix is a plain string prefix, not aware of segments.
        """
        self.assertHTTPTable(
            'PathPrefix("/css")',
            {
                "https://example.com": False,
                "https://example.com/html": False,
                "https://example.org/css": True,
                "https://example.com/css": True,
                "https://example.com/css/": True,
                "https://example.com/css/main.css": True,
                "https://example.com/css-for-sale": True,
                "https://example.com/CSS": False,
            },
        )

    def test_pathRegexp(self) -> None:
        """
        PathRegexp is an unanchored regexp on the routing path.
        """
        self.assertHTTPTable(
            "PathRegexp(`^/(css|js)`)",
            {
                "https://example.com": False,
                "https://example.com/html": False,
                "https://example.org/css": True,
                "https://example.com/CSS": False,
                "https://example.com/css/": True,
                "https://example.com/css/main.css": True,
                "https://example.com/js/main.js": True,
            },
        )
        self.assertHTTPTable("PathRegexp(`css`)", {"https://example.com/a/css/b": True})

    def test_pathRegexpWithV2Template(self) -> None:
        """
        Braces are literal in v3 and match decoded %7B/%7D in the routing path.
        """
        self.assertHTTPTable(
            'PathRegexp("/{path:(css|js)}")',
            {
                "https://example.com": False,
                "https://example.org/css": False,
                "https://example.com/{path:css}": True,
                "https://example.com/{path:css}/": True,
                "https://example.com/%7Bpath:css%7D": True,
                "https://example.com/%7Bpath:js%7D/": True,
            },
        )

    def test_routingPathDecodesUnreserved(self) -> None:
        """
        Percent-escapes of non-reserved characters are decoded before matching.
        """
        self.assertHTTPTable(
            "PathPrefix(`/foo bar`)",
            {"http://a/foo%20bar": True, "http://a/foo%20bar/baz": True, "http://a/foo+bar": False},
        )
        self.assertHTTPTable("Path(`/é`)", {"http://a/%C3%A9": True, "http://a/%c3%a9": True})
        self.assertHTTPTable("Path(`/a~b`)", {"http://a/a%7Eb": True, "http://a/a%7eb": True})

    def test_routingPathKeepsReservedEscapes(self) -> None:
        """
        Escapes of reserved characters (and %25) stay encoded, upper-cased.
        """
        self.assertHTTPTable(
            "Path(`/foo%2Fbar`)",
            {"http://a/foo%2Fbar": True, "http://a/foo%2fbar": True, "http://a/foo/bar": False},
        )
        self.assertHTTPTable("Path(`/foo/bar`)", {"http://a/foo%2Fbar": False})
        self.assertHTTPTable(
            "Path(`/foo bar%2Fbaz%23qux`)", {"http://a/foo%20bar%2Fbaz%23qux": True}
        )
        self.assertHTTPTable("Path(`/100%25`)", {"http://a/100%25": True})


class HeaderMatcherTests(RuleCase):
    """
    Header and HeaderRegexp in the v3 syntax.
    """

    def test_errors(self) -> None:
        """
        Missing or empty key or value, three arguments and a bad regexp are errors.
        """
        for name in ["Header", "HeaderRegexp"]:
            for args in ["", "`X-Forwarded-Host`", "`X-Forwarded-Host`, ``", "``, `example.com`", "`a`, `b`, `c`"]:
                self.assertHTTPError(f"{name}({args})")
        self.assertHTTPError("HeaderRegexp(`X-Forwarded-Host`,`(example.com`)")

    def test_header(self) -> None:
        """
        Header matches when any value of the header equals the argument; the key may be written in any case.
        """
        for rule in ["Header(`X-Forwarded-Proto`, `https`)", "Header(`x-forwarded-proto`, `https`)"]:
            self.assertRequests(
                rule,
                [
                    (request(headers={"X-Forwarded-Proto": "https"}), True),
                    (request(headers={"X-Forwarded-Proto": ["http", "https"]}), True),
                    (request(headers={"X-Forwarded-Proto": ["https", "http"]}), True),
                    (request(headers={"X-Forwarded-Proto": "HTTPS"}), False),
                    (request(headers={"X-Forwarded-Proto": "https, http"}), False),
                    (request(headers={"X-Forwarded-Host": "example.com"}), False),
                    (request(), False),
                ],
            )

    def test_headerRegexp(self) -> None:
        """
        HeaderRegexp matches when any value of the header matches the unanchored regexp.
        """
        for rule in ["HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)", "HeaderRegexp(`x-forwarded-proto`, `^https?$`)"]:
            self.assertRequests(
                rule,
                [
                    (request(headers={"X-Forwarded-Proto": "http"}), True),
                    (request(headers={"X-Forwarded-Proto": "https"}), True),
                    (request(headers={"X-Forwarded-Proto": "HTTPS"}), False),
                    (request(headers={"X-Forwarded-Proto": ["ws", "https"]}), True),
                    (request(headers={"X-Forwarded-Host": "example.com"}), False),
                ],
            )

    def test_headerRegexpV2TemplateIsRegexp(self) -> None:
        """
        A v2 template in HeaderRegexp is a regexp whose braces are literal.
        """
        self.assertRequests(
            "HeaderRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
            [
                (request(headers={"X-Forwarded-Proto": "http"}), False),
                (request(headers={"X-Forwarded-Proto": "https"}), False),
                (request(headers={"X-Forwarded-Proto": "http{secure:}"}), True),
                (request(headers={"X-Forwarded-Proto": "HTTP{secure:}"}), False),
                (request(headers={"X-Forwarded-Proto": "http{secure:s}"}), True),
                (request(headers={"X-Forwarded-Proto": "http{secure:S}"}), False),
                (request(headers={"X-Forwarded-Proto": ["ws", "http{secure:s}"]}), True),
            ],
        )


class QueryMatcherTests(RuleCase):
    """
    Query and QueryRegexp in the v3 syntax.
    """

    def test_errors(self) -> None:
        """
        No argument, empty key or value, three arguments and a bad regexp are errors.
        """
        for rule in [
            "Query()",
            "Query(``)",
            "Query(``, `traefik`)",
            "Query(`q`, ``)",
            "Query(`q`, `traefik`, `proxy`)",
            "QueryRegexp()",
            "QueryRegexp(``)",
            "QueryRegexp(`q`, `(traefik`)",
            "QueryRegexp(`q`, `traefik`, `proxy`)",
        ]:
            self.assertHTTPError(rule)

    def test_query(self) -> None:
        """
        Query(k, v) matches when any value of k equals v, case-sensitively.
        """
        self.assertHTTPTable(
            "Query(`q`, `traefik`)",
            {
                "https://example.com": False,
                "https://example.com?q=traefik": True,
                "https://example.com?rel=ddg&q=traefik": True,
                "https://example.com?q=traefik&q=proxy": True,
                "https://example.com?q=awesome&q=traefik": True,
                "https://example.com?q=nginx": False,
                "https://example.com?rel=ddg": False,
                "https://example.com?q=TRAEFIK": False,
                "https://example.com?Q=traefik": False,
                "https://example.com?rel=traefik": False,
                "https://example.com?q=tra%65fik": True,
                "https://example.com?q=traefik+": False,
            },
        )

    def test_queryOneArgument(self) -> None:
        """
        Query(k) matches a parameter k with an empty value only.
        """
        self.assertHTTPTable(
            "Query(`mobile`)",
            {
                "https://example.com": False,
                "https://example.com?mobile": True,
                "https://example.com?mobile=": True,
                "https://example.com?mobile=true": False,
                "https://example.com?mobile=true&mobile": True,
            },
        )

    def test_queryRegexp(self) -> None:
        """
        QueryRegexp(k, re) matches when any value of k matches re.
        """
        self.assertHTTPTable(
            "QueryRegexp(`q`, `^(traefik|nginx)$`)",
            {
                "https://example.com": False,
                "https://example.com?q=traefik": True,
                "https://example.com?q=awesome&q=traefik": True,
                "https://example.com?q=TRAEFIK": False,
                "https://example.com?Q=traefik": False,
                "https://example.com?rel=traefik": False,
                "https://example.com?q=nginx&q=proxy": True,
                "https://example.com?q=haproxy": False,
            },
        )
        self.assertHTTPTable(
            "QueryRegexp(`q`, `^.*$`)",
            {
                "https://example.com": False,
                "https://example.com?q=TRAEFIK": True,
                "https://example.com?q=": True,
                "https://example.com?Q=nginx": False,
            },
        )

    def test_queryRegexpOneArgument(self) -> None:
        """
        QueryRegexp(k) behaves as Query(k).
        """
        self.assertHTTPTable(
            "QueryRegexp(`mobile`)",
            {"https://example.com?mobile": True, "https://example.com?mobile=1": False},
        )

    def test_queryRegexpV2TemplateIsRegexp(self) -> None:
        """
        A v2 template in QueryRegexp is a regexp whose braces are literal.
        """
        self.assertHTTPTable(
            "QueryRegexp(`q`, `{value:(traefik|nginx)}`)",
            {"https://example.com?q=traefik": False, "https://example.com?q={value:traefik}": True},
        )

    def test_semicolons(self) -> None:
        """
        Semicolons in the query separate parameters by default.
        """
        self.assertHTTPTable("Query(`b`, `2`)", {"http://a/?a=1;b=2": True})


class HTTPRuleTests(RuleCase):
    """
    Whole v3 rules: operators over matchers (Traefik's mux_test.go).
    """

    def test_hostAndPathPrefix(self) -> None:
        """
        && needs both matchers.
        """
        self.assertHTTPTable(
            "Host(`localhost`) && PathPrefix(`/css`)",
            {"https://localhost/css": True, "https://localhost/js": False},
        )

    def test_hostOrHost(self) -> None:
        """
        || needs either matcher.
        """
        self.assertHTTPTable(
            "Host(`example.com`) || Host(`example.org`)",
            {"https://example.com/css": True, "https://example.org/js": True, "https://example.eu/html": False},
        )

    def test_precedence(self) -> None:
        """
        host OR host AND path means host OR (host AND path), unlike (host OR host) AND path.
        """
        table = {
            "https://example.com/css": True,
            "https://example.com/js": True,
            "https://example.org/css": True,
            "https://example.org/js": False,
            "https://example.eu/css": False,
        }
        self.assertHTTPTable('Host("example.com") || (Host("example.org") && Path("/css"))', table)
        self.assertHTTPTable('Host("example.com") || Host("example.org") && Path("/css")', table)
        self.assertHTTPTable(
            '(Host("example.com") || Host("example.org")) && Path("/css")',
            {
                "https://example.com/css": True,
                "https://example.com/js": False,
                "https://example.org/css": True,
                "https://example.org/js": False,
                "https://example.eu/css": False,
            },
        )
        self.assertHTTPTable(
            '(Host("example.com") && Path("/js")) || ((Host("example.org")) && Path("/css"))',
            {
                "https://example.com/css": False,
                "https://example.com/js": True,
                "https://example.org/css": True,
                "https://example.org/js": False,
                "https://example.eu/css": False,
            },
        )

    def test_casings(self) -> None:
        """
        PATHPREFIX, pathprefix, PathPrefix and Pathprefix all work.
        """
        for name in ["PATHPREFIX", "pathprefix", "PathPrefix", "Pathprefix"]:
            self.assertHTTPTable(f'{name}("/css")', {"https://example.com/css": True, "https://example.com/js": False})

    def test_not(self) -> None:
        """
        Negations, including over groups and doubled, evaluate as De Morgan says.
        """
        self.assertHTTPTable('!Host("example.com")', {"https://example.org": True, "https://example.com": False})
        self.assertHTTPTable(
            '!(Host("example.com") || Host("example.org"))',
            {"https://example.eu/js": True, "https://example.com/css": False, "https://example.org/js": False},
        )
        self.assertHTTPTable(
            '!(Host("example.com") && Path("/css"))',
            {"https://example.com/js": True, "https://example.eu/css": True, "https://example.com/css": False},
        )
        self.assertHTTPTable(
            '!(Host("example.com") && !Path("/css"))',
            {"https://example.com/css": True, "https://example.org/css": True, "https://example.com/js": False},
        )
        self.assertHTTPTable(
            '!Host("example.com") || !Path("/css")',
            {"https://example.com/js": True, "https://example.org/css": True, "https://example.com/css": False},
        )
        self.assertHTTPTable(
            '!(!(Host("example.com") && Pathprefix("/css")))',
            {"https://example.com/css": True, "https://example.com/js": False, "https://example.org/css": False},
        )
        self.assertHTTPTable(
            '!Host("example.com") && Pathprefix("/css")',
            {
                "https://example.org/css": True,
                "https://example.org/js": False,
                "https://example.com/css": False,
                "https://example.com/js": False,
            },
        )

    def test_ruleErrors(self) -> None:
        """
        Rules with no matcher, unquoted arguments or matcher errors do not compile.
        """
        for rule in ["", "rulewithnotmatcher", "Host(example.com)", "Host(`a`) && Path(`b`)"]:
            self.assertHTTPError(rule)

    def test_matcherErrorNamesMatcher(self) -> None:
        """
        A matcher's error message names the matcher.
        """
        self.assertIn("Path", str(self.assertHTTPError("Host(`a`) && Path(`css`)")))


# HTTP matchers, v2 syntax


class HTTPV2MatcherTests(RuleCase):
    """
    The v2 syntax: multi-argument ORs and gorilla/mux templates (Traefik's matcher_v2_test.go).
    """

    def test_clientIP(self) -> None:
        """
        ClientIP takes several IPs or ranges.
        """
        for rule in ["ClientIP(`1`)", "ClientIP()", "ClientIP(``)", "ClientIP(`invalid`)"]:
            self.assertHTTPError(rule, "v2")
        for rule, clientIP, expected in [
            ("ClientIP(`127.0.0.1`, `192.168.1.0/24`)", "127.0.0.1", True),
            ("ClientIP(`127.0.0.1`, `192.168.1.0/24`)", "192.168.1.1", True),
            ("ClientIP(`127.0.0.1`)", "192.168.1.1", False),
            ("ClientIP(`127.0.0.1`)", "1", False),
            ("ClientIP(`10.10.1.1`)", "10.0.0.0", False),
            ("ClientIP(`10::10`)", "::1", False),
            ("ClientIP(`10.0.0.0`)", "10.0.0.0", True),
            ("ClientIP(`10::10`)", "10::10", True),
            ("ClientIP(`10.0.0.1`, `10.0.0.0`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0/24`)", "10.0.0.0", False),
            ("ClientIP(`11::/16`)", "10::", False),
            ("ClientIP(`10.0.0.0/16`)", "10.0.0.0", True),
            ("ClientIP(`10::/16`)", "10::10", True),
            ("ClientIP(`11.0.0.0/16`, `10.0.0.0/16`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0/16`, `10.0.0.0`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0`, `10.0.0.0/16`)", "10.0.0.0", True),
        ]:
            matcher = compileHTTPRule(rule, "v2")
            self.assertEqual(matcher(request(clientIP=clientIP)), expected, (rule, clientIP))

    def test_method(self) -> None:
        """
        Method takes several methods, upper-cased.
        """
        for rule in ["Method()", "Method(``)"]:
            self.assertHTTPError(rule, "v2")
        matcher = compileHTTPRule("Method(`GET`, `post`)", "v2")
        for method, expected in [("GET", True), ("POST", True), ("PUT", False), ("get", False)]:
            self.assertEqual(matcher(request(method=method)), expected, method)

    def test_host(self) -> None:
        """
        Host (and its alias HostHeader) takes several hosts, compared as v3 does.
        """
        for rule in ["Host()", "Host(``)", "Host(`🦭.com`)"]:
            self.assertHTTPError(rule, "v2")
        self.assertHTTPTable(
            "Host(`example.com`, `example.org`)",
            {
                "https://example.com": True,
                "https://example.com:8080": True,
                "https://EXAMPLE.COM/path": True,
                "https://example.org/path": True,
                "https://example.eu": False,
            },
            "v2",
        )
        self.assertHTTPTable(
            "Host(`example.com.`)",
            {"https://example.com": True, "https://example.com.": True, "https://example.org.": False},
            "v2",
        )
        self.assertHTTPTable("Host(`example.com`)", {"https://example.com./path": True}, "v2")
        self.assertHTTPTable("Host(`EXAMPLE.COM`)", {"https://example.com": True}, "v2")
        self.assertHTTPTable("Host(`xn--9t9h.com`)", {"https://xn--9t9h.com": True, "https://🦭.com": False}, "v2")
        self.assertHTTPTable("Host(`10::10`)", {"http://[10::10]/foo": True}, "v2")
        self.assertHTTPTable("HostHeader(`localhost`)", {"http://localhost/foo": True, "http://bar/foo": False}, "v2")
        self.assertHTTPTable("Host(`nope,localhost`)", {"http://localhost/foo": False}, "v2")

    def test_hostRegexpTemplates(self) -> None:
        """
        HostRegexp takes gorilla templates: literal text is quoted, {name:re} is a regexp, and the whole host is matched case-insensitively.
        """
        for rule in ["HostRegexp()", "HostRegexp(``)", "HostRegexp(`🦭.com`)", 'HostRegexp("{test")', "HostRegexp(`{:a}`)", "HostRegexp(`{a:}`)", "HostRegexp(`{a:(}`)"]:
            self.assertHTTPError(rule, "v2")
        self.assertHTTPTable(
            "HostRegexp(`(example.com`)",
            {"https://example.com": False, "https://(example.com": True},
            "v2",
        )
        self.assertHTTPTable(
            "HostRegexp(`example.com`, `example.org`)",
            {"https://example.com": True, "https://example.com:8080": True, "https://example.org/path": True},
            "v2",
        )
        self.assertHTTPTable(
            r"HostRegexp(`^[A-Z]+\.com$`)",
            {"https://example.com": False, "https://EXAMPLE.com": False},
            "v2",
        )
        self.assertHTTPTable(
            r"HostRegexp(`{domain:[a-zA-Z-]+\.com}`)",
            {"https://example.com": True, "https://example.com/path": True, "https://example.org": False},
            "v2",
        )
        urls = {
            "http://foo.bar.com": True,
            "http://bar.com": True,
            "http://fooubar.com": False,
            "http://barucom": False,
            "http://barcom": False,
        }
        self.assertHTTPTable(r"HostRegexp(`{subdomain:(foo\.)?bar\.com}`)", urls, "v2")
        self.assertHTTPTable(r"HostRegexp(`{subdomain:(?:foo\.)?bar\.com}`)", urls, "v2")
        urls = {
            "http://FOO.bar.com": True,
            "http://foo.bar.com": True,
            "http://fooubar.com": False,
            "http://barucom": False,
            "http://barcom": False,
        }
        self.assertHTTPTable(r"HostRegexp(`{dummy:[A-Za-z-]+\.bar\.com}`)", urls, "v2")
        self.assertHTTPTable(r"HostRegexp(`{dummy:[a-z-]+\.bar\.com}`)", urls, "v2")
        self.assertHTTPTable("HostRegexp(`foo.bar.com`)", urls, "v2")

    def test_hostRegexpDefaultPattern(self) -> None:
        """
        A bare {name} in a host template matches one label, and the template is anchored.
        """
        self.assertHTTPTable(
            "HostRegexp(`{sub}.example.com`)",
            {
                "http://a.example.com": True,
                "http://a.b.example.com": False,
                "http://example.com": False,
                "http://a.example.com.evil": False,
            },
            "v2",
        )

    def test_hostRegexpOnRawHost(self) -> None:
        """
        v2 HostRegexp matches the Host header without port, without the trailing-dot tolerance of Host.
        """
        self.assertHTTPTable(
            "HostRegexp(`example.com`)",
            {"http://Example.COM:8080/": True, "http://example.com./": False},
            "v2",
        )

    def test_path(self) -> None:
        """
        Path takes several anchored templates.
        """
        for rule in ["Path()", "Path(``)", "Path(`css`)", 'Host("tchouk") && Path("", "/titi")']:
            self.assertHTTPError(rule, "v2")
        self.assertHTTPTable(
            "Path(`/css`, `/js`)",
            {
                "https://example.com": False,
                "https://example.com/html": False,
                "https://example.org/css": True,
                "https://example.com/css/": False,
                "https://example.com/js": True,
                "https://example.com/js/main.js": False,
            },
            "v2",
        )
        self.assertHTTPTable(
            "Path(`/css{path:(/.*)?}`)",
            {
                "https://example.com": False,
                "https://example.com/css/main.css": True,
                "https://example.org/css/main.css": True,
                "https://example.com/css/components/component.css": True,
                "https://example.com/css.css": False,
                "https://example.com/js/main.js": False,
            },
            "v2",
        )

    def test_pathTemplates(self) -> None:
        """
        A bare {name} in a path template matches one segment; {name:re} is anchored to the whole path.
        """
        self.assertHTTPTable(
            "Path(`/articles/{cat}/{id:[0-9]+}`)",
            {
                "http://a/articles/tech/42": True,
                "http://a/articles/tech/42/": False,
                "http://a/articles/te/ch/42": False,
                "http://a/articles/tech/4a": False,
                "http://a/articles//42": False,
            },
            "v2",
        )

    def test_pathPrefix(self) -> None:
        """
        PathPrefix takes several templates anchored at the start only.
        """
        for rule in ["PathPrefix()", "PathPrefix(``)", "PathPrefix(`css`)"]:
            self.assertHTTPError(rule, "v2")
        self.assertHTTPTable(
            "PathPrefix(`/css`, `/js`)",
            {
                "https://example.com": False,
                "https://example.com/html": False,
                "https://example.org/css": True,
                "https://example.com/css/main.css": True,
                "https://example.com/js/": True,
            },
            "v2",
        )
        self.assertHTTPTable(
            "PathPrefix(`/css-{name:[0-9]?}`)",
            {
                "https://example.com": False,
                "https://example.com/css-1/main.css": True,
                "https://example.org/css-222/main.css": True,
                "https://example.com/css-333333/components/component.css": True,
                "https://example.com/css.css": False,
                "https://example.com/js/main.js": False,
            },
            "v2",
        )

    def test_templateRegexp(self) -> None:
        """
        templateRegexp builds gorilla/mux's regexps for each kind of template.
        """
        self.assertEqual(templateRegexp("/a/{id:[0-9]+}", "path"), "^/a/(?P<v0>[0-9]+)$")
        self.assertEqual(templateRegexp("/a.b/{x}", "prefix"), r"^/a\.b/(?P<v0>[^/]+)")
        self.assertEqual(templateRegexp("{sub}.a.com", "host"), r"(?i)^(?P<v0>[^.]+)\.a\.com$")
        self.assertEqual(templateRegexp("k=", "query"), "^k=.*$")
        self.assertEqual(templateRegexp("k={v}", "query"), "^k=(?P<v0>.*)$")
        self.assertEqual(templateRegexp("/{a}/{b:x{2}}", "path"), "^/(?P<v0>[^/]+)/(?P<v1>x{2})$")
        for template in ["/{a", "/a}", "/{}", "/{a:}", "/{:b}", "/{a:(}"]:
            self.assertRaises(RuleError, templateRegexp, template, "path")

    def test_headers(self) -> None:
        """
        Headers takes key/value pairs that must all match, keys in any case.
        """
        for rule in [
            "Headers()",
            "Headers(`X-Forwarded-Host`)",
            "Headers(`X-Forwarded-Host`, ``)",
            "Headers(``, `example.com`)",
            "Headers(`X-Forwarded-Host`, `example.com`, `example.org`)",
            'Headers("titi")',
        ]:
            self.assertHTTPError(rule, "v2")
        for rule in ["Headers(`X-Forwarded-Proto`, `https`)", "Headers(`x-forwarded-proto`, `https`)"]:
            self.assertRequests(
                rule,
                [
                    (request(headers={"X-Forwarded-Proto": "https"}), True),
                    (request(headers={"X-Forwarded-Proto": ["http", "https"]}), True),
                    (request(headers={"X-Forwarded-Proto": ["https", "http"]}), True),
                    (request(headers={"X-Forwarded-Host": "example.com"}), False),
                ],
                "v2",
            )
        self.assertRequests(
            "Headers(`Content-Type`,`application/json`)",
            [
                (request(headers={"Content-Type": "application/json"}), True),
                (request(headers={"Content-Type": "application/foo"}), False),
            ],
            "v2",
        )

    def test_headersPairsAnd(self) -> None:
        """
        Several pairs must all match; a repeated key keeps its last value (gorilla keeps a map).
        """
        rule = "Headers(`X-A`, `1`, `X-B`, `2`)"
        self.assertRequests(
            rule,
            [
                (request(headers={"X-A": "1", "X-B": "2"}), True),
                (request(headers={"X-A": "1"}), False),
                (request(headers={"X-B": "2"}), False),
            ],
            "v2",
        )
        self.assertRequests(
            "Headers(`X-A`, `1`, `X-A`, `2`)",
            [(request(headers={"X-A": "2"}), True), (request(headers={"X-A": "1"}), False)],
            "v2",
        )

    def test_headersRegexp(self) -> None:
        """
        HeadersRegexp takes key/regexp pairs that must all match.
        """
        for rule in [
            "HeadersRegexp(`X-Forwarded-Host`)",
            "HeadersRegexp(`X-Forwarded-Host`, ``)",
            "HeadersRegexp(``, `example.com`)",
            "HeadersRegexp(`X-Forwarded-Host`,`(example.com`)",
            "HeadersRegexp(`X-Forwarded-Host`, `example.com`, `example.org`)",
            "HeaderRegexp(`X-Forwarded-Host`, `example.com`)",
        ]:
            self.assertHTTPError(rule, "v2")
        for rule in ["HeadersRegexp(`X-Forwarded-Proto`, `^https?$`)", "HeadersRegexp(`x-forwarded-proto`, `^https?$`)"]:
            self.assertRequests(
                rule,
                [
                    (request(headers={"X-Forwarded-Proto": "http"}), True),
                    (request(headers={"X-Forwarded-Proto": "HTTPS"}), False),
                    (request(headers={"X-Forwarded-Proto": ["ws", "https"]}), True),
                    (request(headers={"X-Forwarded-Host": "example.com"}), False),
                ],
                "v2",
            )
        self.assertRequests(
            "HeadersRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
            [
                (request(headers={"X-Forwarded-Proto": "https"}), False),
                (request(headers={"X-Forwarded-Proto": "http{secure:s}"}), True),
            ],
            "v2",
        )
        self.assertRequests(
            "HeadersRegexp(`Content-Type`, `application/(text|json)`, `X-B`, `^b$`)",
            [
                (request(headers={"Content-Type": "application/text", "X-B": "b"}), True),
                (request(headers={"Content-Type": "application/json"}), False),
            ],
            "v2",
        )

    def test_query(self) -> None:
        """
        Query takes k=v pairs that must all match the first value of each key.
        """
        for rule in ['Query("titi")', 'Query("titi={test")', "Query(`a=1`, `b`)"]:
            self.assertHTTPError(rule, "v2")
        self.assertHTTPTable(
            "Query(`foo=bar`, `bar=baz`)",
            {
                "http://localhost/foo?foo=bar&bar=baz": True,
                "http://localhost/foo?bar=baz": False,
                "http://localhost/foo?foo=bar": False,
            },
            "v2",
        )
        self.assertHTTPTable(
            "Query(`foo=b=ar`)",
            {"http://localhost/foo?foo=b=ar": True, "http://localhost/foo?foo=bar": False},
            "v2",
        )
        self.assertHTTPTable(
            "Query(`q=a`)",
            {"http://x/?q=a&q=b": True, "http://x/?q=b&q=a": False, "http://x/?q=A": False},
            "v2",
        )

    def test_queryPairsAsSeparateArguments(self) -> None:
        """
        Query(`k`, `v`) in v2 is the pair k=v.
        """
        self.assertHTTPTable("Query(`a`, `1`)", {"http://x/?a=1": True, "http://x/?a=2": False}, "v2")

    def test_queryEmptyValueAndTemplates(self) -> None:
        """
        k= matches any value of a present key, and {name:re} values are anchored regexps.
        """
        self.assertHTTPTable(
            "Query(`mobile=`)",
            {"http://x/?mobile": True, "http://x/?mobile=yes": True, "http://x/?other=1": False},
            "v2",
        )
        self.assertHTTPTable(
            "Query(`id={id:[0-9]+}`)",
            {"http://x/?id=42": True, "http://x/?id=42a": False, "http://x/?id=": False},
            "v2",
        )

    def test_queryRepeatedKeyAllMustMatch(self) -> None:
        """
        Each pair is its own matcher, so two pairs with one key both test its first value.
        """
        self.assertHTTPTable(
            "Query(`a=1`, `a=2`)", {"http://x/?a=1&a=2": False, "http://x/?a=2": False, "http://x/?a=1": False}, "v2"
        )
        self.assertHTTPError("Query(`a={x}`, `b={x}`)", "v2")

    def test_rules(self) -> None:
        """
        Whole v2 rules combine multi-argument matchers with the operators.
        """
        self.assertHTTPTable(
            "Host(`nope`,`localhost`) && PathPrefix(`/foo`)",
            {"http://localhost/foo": True, "http://nope/foo": True, "http://localhost/bar": False},
            "v2",
        )
        self.assertHTTPTable(
            'Host("tchouk","pouet") && Path("/powpow", "/titi")',
            {
                "http://tchouk/toto": False,
                "http://tchouk/powpow": True,
                "http://pouet/powpow": True,
                "http://tchouk/titi": True,
                "http://pouet/titi": True,
                "http://pouet/toto": False,
                "http://plopi/a": False,
            },
            "v2",
        )
        self.assertHTTPTable(
            '!(Host("tchouk","pouet") && Path("/powpow", "/titi"))',
            {
                "http://tchouk/toto": True,
                "http://tchouk/powpow": False,
                "http://pouet/titi": False,
                "http://plopi/a": True,
            },
            "v2",
        )
        self.assertHTTPTable(
            '(HOST("tchouk") && PATHPREFIX("/titi"))',
            {"http://tchouk/titi": True, "http://tchouk/powpow": False},
            "v2",
        )
        self.assertHTTPTable("Method(`POST`)", {"http://localhost/foo": False}, "v2")


# TCP matchers


class TCPCase(RuleCase):
    """
    Assertions for TCP rules.
    """

    def assertConnections(
        self, rule: str, cases: Iterable[tuple[ConnectionInfo, bool]], syntax: str = "v3"
    ) -> None:
        matcher = compileTCPRule(rule, syntax)
        for conn, expected in cases:
            self.assertEqual(matcher(conn), expected, f"{rule} ({syntax}) on {conn}")


class TCPMatcherTests(TCPCase):
    """
    TCP rules in the v3 syntax (Traefik's tcp matcher_test.go and mux_test.go).
    """

    def test_hostSNIErrors(self) -> None:
        """
        No or empty argument, two arguments, globs, non-ASCII and invalid characters are errors.
        """
        for rule in [
            "",
            "HostSNI()",
            "HostSNI(``)",
            "HostSNI(`example.com`, `example.org`)",
            "HostSNI(`*.com`)",
            "HostSNI(`🦭.com`)",
            "HostSNI(`exa mple.com`)",
            'HostSNI("example.com\\n")',
            "rulewithnotmatcher",
        ]:
            self.assertTCPError(rule)

    def test_hostSNI(self) -> None:
        """
        HostSNI compares the server name exactly, tolerating a trailing dot in the rule.
        """
        for rule, serverName, expected in [
            ("HostSNI(`xn--9t9h.com`)", "xn--9t9h.com", True),
            ("HostSNI(`xn--9t9h.com`)", "🦭.com", False),
            ("HostSNI(`example.com`)", "example.com", True),
            ("HostSNI(`example.com`)", "example.org", False),
            ("HostSNI(`example.com`)", "", False),
            ("HostSNI(`example.com.`)", "example.com.", True),
            ("HostSNI(`example.com.`)", "example.com", True),
            ("HostSNI(`foo.example.com`)", "foo.example.com", True),
            ("HostSNI(`foo_bar.example.com`)", "foo_bar.example.com", True),
            ("HostSNI(`127.0.0.1`)", "127.0.0.1", True),
            ("HostSNI(`10::10`)", "10::10", True),
            ("hostsni(`example.org`)", "example.org", True),
            ("HOSTSNI(`example.org`)", "example.org", True),
            ("!HostSNI(`example.com`)", "example.org", True),
            ("!HostSNI(`example.com`)", "example.com", False),
        ]:
            self.assertConnections(rule, [(connection(serverName), expected)])

    def test_hostSNIArgumentNotLowerCased(self) -> None:
        """
        In v3 the HostSNI argument is not lower-cased (server names are lower-cased by the caller).
        """
        self.assertConnections("HostSNI(`Example.com`)", [(connection("example.com"), False)])

    def test_hostSNICatchAll(self) -> None:
        """
        HostSNI(`*`) matches every connection, even without a server name.
        """
        self.assertConnections("HostSNI(`*`)", [(connection("example.com"), True), (connection(""), True)])

    def test_hostSNIRegexp(self) -> None:
        """
        HostSNIRegexp is an unanchored, case-sensitive regexp on the server name.
        """
        for rule in [
            "HostSNIRegexp(``)",
            "HostSNIRegexp(`🦭.com`)",
            "HostSNIRegexp(`(example.com`)",
            "HostSNIRegexp(`example.com`, `example.org`)",
        ]:
            self.assertTCPError(rule)
        self.assertConnections(
            r"HostSNIRegexp(`^example\.(com|org)$`)",
            [
                (connection("example.com"), True),
                (connection("example.com."), False),
                (connection("EXAMPLE.com"), False),
                (connection("example.org"), True),
                (connection("exampleuorg"), False),
                (connection(""), False),
            ],
        )
        self.assertConnections(
            "HostSNIRegexp(`example.{tld:(com|org)}`)",
            [(connection("example.com"), False), (connection("example.org"), False)],
        )
        self.assertConnections("HostSNIRegexp(`.*`)", [(connection("example.com"), True)])

    def test_clientIP(self) -> None:
        """
        ClientIP takes one IP or CIDR.
        """
        for rule in ["ClientIP(``)", "ClientIP(`🦭/32`)", "ClientIP(`127.0.0.1`, `127.0.0.2`)", "ClientIP()"]:
            self.assertTCPError(rule)
        self.assertConnections(
            "ClientIP(`20.20.20.20`)",
            [(connection(clientIP="20.20.20.20"), True), (connection(clientIP="10.10.10.10"), False)],
        )
        self.assertConnections(
            "ClientIP(`20.20.20.20/24`)",
            [
                (connection(clientIP="20.20.20.20"), True),
                (connection(clientIP="20.20.20.40"), True),
                (connection(clientIP="10.10.10.10"), False),
                (connection(clientIP=""), False),
            ],
        )

    def test_alpn(self) -> None:
        """
        ALPN takes one protocol, never acme-tls/1, and matches any offered protocol.
        """
        for rule in ["ALPN(`acme-tls/1`)", "ALPN(``)", "ALPN(`h2`, `mqtt`)", "ALPN()"]:
            self.assertTCPError(rule)
        self.assertConnections(
            "ALPN(`h2`)",
            [
                (connection(alpn=["h2"]), True),
                (connection(alpn=["mqtt"]), False),
                (connection(alpn=[""]), False),
                (connection(alpn=["http/1.1", "h2"]), True),
                (connection(alpn=[]), False),
            ],
        )

    def test_combinations(self) -> None:
        """
        Operators combine TCP matchers as in Traefik's Test_addTCPRoute.
        """
        cases: list[tuple[str, str, str, Sequence[str], bool]] = [
            ("HostSNI(`example.org`) && ClientIP(`10.0.0.1`)", "example.org", "10.0.0.1", (), True),
            ("!HostSNI(`example.com`) && ClientIP(`10.0.0.1`)", "example.org", "10.0.0.1", (), True),
            ("HostSNI(`example.org`) && !ClientIP(`10.0.0.2`)", "example.org", "10.0.0.1", (), True),
            ("!(HostSNI(`example.com`) || ClientIP(`10.0.0.2`))", "example.org", "10.0.0.1", (), True),
            ("!(HostSNI(`example.com`) && ClientIP(`10.0.0.2`))", "example.org", "10.0.0.2", (), True),
            ("!(HostSNI(`example.com`) && ClientIP(`10.0.0.2`))", "example.com", "10.0.0.1", (), True),
            ("!(HostSNI(`example.com`) && ClientIP(`10.0.0.2`))", "example.com", "10.0.0.2", (), False),
            ("HostSNI(`example.org`) && ClientIP(`10.0.0.1`)", "example.com", "10.0.0.1", (), False),
            ("HostSNI(`example.org`) && ClientIP(`10.0.0.1`)", "example.org", "10.0.0.2", (), False),
            ("HostSNI(`example.org`) || ClientIP(`10.0.0.1`)", "example.com", "10.0.0.1", (), True),
            ("HostSNI(`example.org`) || ClientIP(`10.0.0.1`)", "example.com", "10.0.0.2", (), False),
            ("HostSNI(`example.org`) || HostSNI(`example.eu`) || HostSNI(`example.com`)", "example.org", "", (), True),
            ("HostSNI(`example.org`) || HostSNI(`example.eu`) || HostSNI(`example.com`)", "baz", "", (), False),
            ("HostSNI(`example.org`) || HostSNI(`example.com`) && ClientIP(`10.0.0.1`)", "example.org", "10.0.0.2", (), True),
            ("HostSNI(`example.org`) || HostSNI(`example.com`) && ClientIP(`10.0.0.1`)", "example.com", "10.0.0.1", (), True),
            ("HostSNI(`example.org`) || HostSNI(`example.com`) && ClientIP(`10.0.0.1`)", "example.com", "10.0.0.2", (), False),
            ("HostSNI(`example.org`) || HostSNI(`example.com`) && ClientIP(`10.0.0.1`)", "baz", "10.0.0.1", (), False),
            ("(HostSNI(`example.org`) || HostSNI(`example.com`)) && (ClientIP(`10.0.0.1`) || ClientIP(`10.0.0.2`))", "example.com", "10.0.0.1", (), True),
            ("(HostSNI(`example.org`) || HostSNI(`example.com`)) && (ClientIP(`10.0.0.1`) || ClientIP(`10.0.0.2`))", "baz", "10.0.0.1", (), False),
            ("(HostSNI(`example.org`) || HostSNI(`example.com`)) && (ClientIP(`10.0.0.1`) || ClientIP(`10.0.0.2`))", "example.com", "10.0.0.3", (), False),
            ("(HostSNI(`example.org`) || (HostSNI(`example.com`) && !HostSNI(`example.org`))) && ((ClientIP(`10.0.0.1`) && !ClientIP(`10.0.0.2`)) || ClientIP(`10.0.0.2`)) ", "example.com", "10.0.0.1", (), True),
            ("ALPN(`h2c`) && (!ALPN(`h2`) || HostSNI(`example.eu`))", "example.eu", "", ("h2c", "mqtt"), True),
            ("ALPN(`h2c`) && (!ALPN(`h2`) || HostSNI(`example.eu`))", "example.com", "", ("h2c", "http/1.1", "h2"), False),
            ("ALPN(`h2c`) && (!ALPN(`h2`) || HostSNI(`example.eu`))", "example.com", "", ("h2c", "http/1.1"), True),
            ("ALPN(`h2c`) && (!ALPN(`h2`) || HostSNI(`example.eu`))", "example.com", "", ("http/1.1", "mqtt"), False),
        ]
        for rule, serverName, clientIP, alpn, expected in cases:
            self.assertConnections(rule, [(connection(serverName, alpn, clientIP), expected)])


class TCPV2MatcherTests(TCPCase):
    """
    TCP rules in the v2 syntax (Traefik's tcp matcher_v2_test.go).
    """

    def test_v2HostSNI(self) -> None:
        """
        v2 HostSNI takes several lower-cased hosts.
        """
        for rule in ["HostSNI()", "HostSNI(``)", "HostSNI(`*.com`)", 'HostSNI("a\\n")']:
            self.assertTCPError(rule, "v2")
        self.assertConnections(
            "HostSNI(`Foobar`, `baz.`)",
            [
                (connection("foobar"), True),
                (connection("baz"), True),
                (connection("baz."), True),
                (connection("bar"), False),
                (connection(""), False),
            ],
            "v2",
        )
        self.assertConnections("!HostSNI(`bar`)", [(connection("foobar"), True), (connection("bar"), False)], "v2")
        self.assertConnections("HOSTSNI(`foobar`)", [(connection("foobar"), True)], "v2")

    def test_v2HostSNIStar(self) -> None:
        """
        A leading `*` matches every connection; a `*` after another host needs a server name.
        """
        self.assertConnections("HostSNI(`*`)", [(connection(""), True), (connection("a"), True)], "v2")
        self.assertConnections("HostSNI(`*`, `a`)", [(connection(""), True)], "v2")
        self.assertConnections(
            "HostSNI(`a`, `*`)", [(connection(""), False), (connection("b"), True)], "v2"
        )

    def test_v2HostSNIRegexp(self) -> None:
        """
        v2 HostSNIRegexp takes anchored, case-insensitive gorilla host templates.
        """
        self.assertTCPError("HostSNIRegexp()", "v2")
        self.assertTCPError("HostSNIRegexp(``)", "v2")
        for rule, serverName, expected in [
            ("HostSNIRegexp(`{subdomain:[a-z]+}.foobar`)", "sub.foobar", True),
            ("!HostSNIRegexp(`bar`)", "foobar", True),
            ("hostsniregexp(`foobar`)", "foobar", True),
            ("HOSTSNIREGEXP(`foobar`)", "foobar", True),
            ("HostSNIRegexp(`foobar`)", "bar", False),
            ("HostSNIRegexp(`foobar`)", "FOOBAR", True),
            ("HostSNIRegexp(`{subdomain:[a-z]*}`)", "", True),
            ("HostSNIRegexp(`{dummy}`)", "toto", True),
            ("HostSNIRegexp(`{dummy}`)", "toto.com", False),
            ("HostSNIRegexp(`a.com`, `{x}.b.com`)", "c.b.com", True),
        ]:
            self.assertConnections(rule, [(connection(serverName), expected)], "v2")

    def test_v2ClientIP(self) -> None:
        """
        v2 ClientIP takes several IPs or ranges.
        """
        for rule in ["ClientIP()", "ClientIP(``)", "ClientIP(`invalid`)"]:
            self.assertTCPError(rule, "v2")
        for rule, clientIP, expected in [
            ("ClientIP(`10.0.0.1`)", "not.an.IP", False),
            ("ClientIP(`10.0.0.1`)", "10.0.0.1", True),
            ("!ClientIP(`20.0.0.1`)", "10.0.0.1", True),
            ("clientip(`10.0.0.1`)", "10.0.0.1", True),
            ("CLIENTIP(`10.0.0.1`)", "10.0.0.1", True),
            ("ClientIP(`10.0.0.1`)", "10.0.0.2", False),
            ("!ClientIP(`10.0.0.2`)", "10.0.0.2", False),
            ("ClientIP(`10::10`)", "10::10", True),
            ("!ClientIP(`10::10`)", "::1", True),
            ("ClientIP(`10::10`)", "::1", False),
            ("ClientIP(`10.0.0.1`, `10.0.0.0`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0/24`)", "11.0.0.0", True),
            ("ClientIP(`11.0.0.0/24`)", "10.0.0.0", False),
            ("ClientIP(`11::/16`)", "11::", True),
            ("ClientIP(`11::/16`)", "10::", False),
            ("ClientIP(`11.0.0.0/16`, `10.0.0.0/16`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0/16`, `10.0.0.0`)", "10.0.0.0", True),
            ("ClientIP(`11.0.0.0`, `10.0.0.0/16`)", "10.0.0.0", True),
            ("ClientIP(`10.0.0.1`)", "", False),
        ]:
            self.assertConnections(rule, [(connection(clientIP=clientIP), expected)], "v2")

    def test_v2ALPN(self) -> None:
        """
        v2 ALPN takes several protocols, never acme-tls/1.
        """
        self.assertTCPError("ALPN(`h2`, `acme-tls/1`)", "v2")
        self.assertConnections(
            "ALPN(`h2`, `mqtt`)",
            [(connection(alpn=["mqtt"]), True), (connection(alpn=["http/1.1"]), False)],
            "v2",
        )


# Priorities and host extraction


class PriorityTests(RuleCase):
    """
    Default priorities.
    """

    def test_httpPriorityIsLength(self) -> None:
        """
        The default priority is the length of the rule, whitespace included.
        """
        self.assertEqual(defaultPriority("Host(`example.org`)"), 19)
        self.assertEqual(defaultPriority("HostSNI(`example.org`)"), 22)
        self.assertEqual(defaultPriority("  Host(`example.org`)  "), 23)
        self.assertEqual(defaultPriority(r"HostRegexp(`[a-z]+\.x\.com`)"), 28)

    def test_priorityCountsBytes(self) -> None:
        """
        Go measures the rule in bytes: a non-ASCII character counts its UTF-8 length.
        """
        self.assertEqual(defaultPriority("Path(`/é`)"), 11)
        self.assertEqual(defaultPriority("Path(`/🦭`)"), 13)

    def test_tcpPriority(self) -> None:
        """
        A TCP rule's default priority is its length, except that a lone HostSNI(`*`) gets -1.
        """
        self.assertEqual(defaultTCPPriority("HostSNI(`example.org`)"), 22)
        self.assertEqual(defaultTCPPriority("HostSNI(`*`)"), -1)
        self.assertEqual(defaultTCPPriority("   HostSNI ( `*` )       "), -1)
        self.assertEqual(defaultTCPPriority("hostsni(`*`)"), -1)
        self.assertEqual(defaultTCPPriority("HostSNI(`*`) && ClientIP(`10.0.0.1`)"), 36)
        self.assertEqual(defaultTCPPriority("HostSNI(`*`, `a`)"), 17)
        self.assertEqual(defaultTCPPriority("HostSNIRegexp(`.*`)"), 19)


class HostsOfTests(RuleCase):
    """
    hostsOf: the domains of a rule's Host matchers (Traefik's ParseDomains).
    """

    def test_hosts(self) -> None:
        """
        Host arguments are collected lower-cased, whatever the operators; other matchers are ignored.
        """
        self.assertEqual(hostsOf("Path(`/test`)"), [])
        self.assertEqual(hostsOf("Host(`foo.bar`) && Path(`/test`)"), ["foo.bar"])
        self.assertEqual(
            hostsOf("Host(`Foo.Bar`) || Host(`bar.buz`) && Path(`/test`)"), ["foo.bar", "bar.buz"]
        )
        self.assertEqual(hostsOf("Host(`Foo.Bar`) && Path(`/test`)"), ["foo.bar"])
        self.assertEqual(hostsOf("host(`A.com`) || !HOST(`b.com`)"), ["a.com", "b.com"])
        self.assertEqual(hostsOf("Host(`a.com`, `b.com`)"), ["a.com", "b.com"])

    def test_noHosts(self) -> None:
        """
        Unknown matchers, unparsable rules and Host without argument give no domain.
        """
        self.assertEqual(hostsOf("Foobar(`foo.bar`,`test.bar`)"), [])
        self.assertEqual(hostsOf("Host() && Path(`/test`)"), [])
        self.assertEqual(hostsOf("Host(`a`"), [])
        self.assertEqual(hostsOf("HostRegexp(`a.com`) && HostHeader(`b.com`)"), [])


class MatcherTableTests(RuleCase):
    """
    The matcher tables.
    """

    def test_names(self) -> None:
        """
        Each syntax has exactly Traefik's matcher names.
        """
        self.assertEqual(
            set(HTTP_V3),
            {"ClientIP", "Method", "Host", "HostRegexp", "Path", "PathRegexp", "PathPrefix",
             "Header", "HeaderRegexp", "Query", "QueryRegexp"},
        )
        self.assertEqual(
            set(HTTP_V2),
            {"Host", "HostHeader", "HostRegexp", "ClientIP", "Path", "PathPrefix", "Method",
             "Headers", "HeadersRegexp", "Query"},
        )
        self.assertEqual(set(TCP_V3), {"HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"})
        self.assertEqual(set(TCP_V2), {"HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"})
