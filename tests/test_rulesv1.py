"""
Tests for L{relayd.runtime.rulesv1}: Traefik 1.x frontend rules translated to
v3 rules and middlewares.

The facts come from Traefik v1.7.34: rules/rules.go and rules/rules_test.go
(parsing and matching), server/server_configuration.go (priorities and the
nesting of the modifier handlers) and the containous/mux fork it pinned.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from twisted.trial.unittest import SynchronousTestCase

from relayd.runtime.rules import RuleError, compileHTTPRule, hostsOf
from relayd.runtime.rulesv1 import NEVER, V1Translation, quote, translate
from tests.test_rules import request


def middlewares(*pairs: tuple[str, dict[str, Any]]) -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple(pairs)


class TranslateTests(SynchronousTestCase):
    """
    The v3 rule, middlewares and priority of a translation.
    """

    def assertTranslation(
        self,
        rules: str | Sequence[str],
        rule: str,
        mws: Sequence[tuple[str, dict[str, Any]]] = (),
        priority: int | None = None,
    ) -> V1Translation:
        result = translate(rules)
        self.assertEqual(result.rule, rule)
        self.assertEqual(result.middlewares, tuple(mws))
        if priority is not None:
            self.assertEqual(result.priority, priority)
        compileHTTPRule(result.rule)
        return result

    def test_host(self) -> None:
        """
        Host:a,b becomes an OR of Host matchers.
        """
        self.assertTranslation("Host:a.com", "Host(`a.com`)")
        self.assertTranslation("Host:a.com,b.com", "Host(`a.com`) || Host(`b.com`)")
        self.assertTranslation("Host: a.com , b.com ", "Host(`a.com`) || Host(`b.com`)")

    def test_severalMatchersAnd(self) -> None:
        """
        Matchers separated by ; are ANDed, an OR group getting parentheses.
        """
        self.assertTranslation(
            "Host:a.com,b.com;PathPrefix:/api",
            "(Host(`a.com`) || Host(`b.com`)) && PathPrefix(`/api`)",
        )
        self.assertTranslation(
            "Host: Foo.Bar ; Path:/FOObar", "Host(`Foo.Bar`) && Path(`/FOObar`)"
        )

    def test_emptyFieldsDropped(self) -> None:
        """
        Empty ; : and , fields are dropped, as strings.FieldsFunc does.
        """
        self.assertTranslation(";;Host:a.com;;Path::/x,,/y;", "Host(`a.com`) && (Path(`/x`) || Path(`/y`))")

    def test_pathPrefixStrip(self) -> None:
        """
        PathPrefixStrip matches as PathPrefix and strips its prefixes, longest first.
        """
        self.assertTranslation(
            "PathPrefixStrip:/api,/api/v1,/b",
            "PathPrefix(`/api`) || PathPrefix(`/api/v1`) || PathPrefix(`/b`)",
            [("stripPrefix", {"prefixes": ["/api/v1", "/api", "/b"]})],
        )

    def test_pathStrip(self) -> None:
        """
        PathStrip matches the exact path and strips it.
        """
        self.assertTranslation(
            "PathStrip:/a", "Path(`/a`)", [("stripPrefix", {"prefixes": ["/a"]})]
        )

    def test_stripRegex(self) -> None:
        """
        PathStripRegex and PathPrefixStripRegex match the template and strip its regexp.
        """
        self.assertTranslation(
            "PathPrefixStripRegex:/a/{id:[0-9]+}",
            "PathRegexp(`^/a/(?P<v0>[0-9]+)`)",
            [("stripPrefixRegex", {"regex": ["^/a/(?P<v0>[0-9]+)"]})],
        )
        self.assertTranslation(
            "PathStripRegex:/a/{id:[0-9]+}",
            "PathRegexp(`^/a/(?P<v0>[0-9]+)$`)",
            [("stripPrefixRegex", {"regex": ["^/a/(?P<v0>[0-9]+)"]})],
        )

    def test_modifiers(self) -> None:
        """
        AddPrefix, ReplacePath and ReplacePathRegex add middlewares and match everything.
        """
        self.assertTranslation("AddPrefix:/x", "PathPrefix(`/`)", [("addPrefix", {"prefix": "/x"})])
        self.assertTranslation("ReplacePath:/x", "PathPrefix(`/`)", [("replacePath", {"path": "/x"})])
        self.assertTranslation(
            "ReplacePathRegex: ^/a/(.*) /b/$1",
            "PathPrefix(`/`)",
            [("replacePathRegex", {"regex": "^/a/(.*)", "replacement": "/b/$1"})],
        )

    def test_replacePathRegexNeedsExactlyOneSpace(self) -> None:
        """
        A ReplacePathRegex value that does not split on spaces into exactly two parts is ignored, as Traefik 1.x did.
        """
        self.assertTranslation("ReplacePathRegex: ^/a/(.*)  /b/$1", "PathPrefix(`/`)")
        self.assertTranslation("ReplacePathRegex: ^/a/(.*)", "PathPrefix(`/`)")
        self.assertTranslation("ReplacePathRegex:^/a/(.*) /b/$1;ReplacePathRegex:^/x", "PathPrefix(`/`)")

    def test_lastModifierArgumentWins(self) -> None:
        """
        A modifier with several arguments keeps the last one.
        """
        self.assertTranslation("AddPrefix:/x,/y", "PathPrefix(`/`)", [("addPrefix", {"prefix": "/y"})])
        self.assertTranslation(
            "ReplacePathRegex: ^/a{1,2}/(.*) /b/$1",
            "PathPrefix(`/`)",
            [("replacePathRegex", {"regex": "2}/(.*)", "replacement": "/b/$1"})],
        )

    def test_modifierOrder(self) -> None:
        """
        Modifiers run in Traefik 1.x's handler order whatever order they are written in.
        """
        self.assertTranslation(
            "ReplacePath:/r;ReplacePathRegex:^/(.*) /z/$1;AddPrefix:/p;PathPrefixStrip:/s;"
            "PathPrefixStripRegex:/t/{x}",
            "PathPrefix(`/s`) && PathRegexp(`^/t/(?P<v0>[^/]+)`)",
            [
                ("stripPrefixRegex", {"regex": ["^/t/(?P<v0>[^/]+)"]}),
                ("stripPrefix", {"prefixes": ["/s"]}),
                ("addPrefix", {"prefix": "/p"}),
                ("replacePathRegex", {"regex": "^/(.*)", "replacement": "/z/$1"}),
                ("replacePath", {"path": "/r"}),
            ],
        )

    def test_method(self) -> None:
        """
        Method:a,b becomes an OR of Method matchers.
        """
        self.assertTranslation("Method:GET,post", "Method(`GET`) || Method(`post`)")

    def test_headers(self) -> None:
        """
        Headers pairs become ANDed Header matchers; an empty value checks presence; a repeated name keeps its last value.
        """
        self.assertTranslation(
            "Headers:Content-Type,application/json,X-A,1",
            "Header(`Content-Type`, `application/json`) && Header(`X-A`, `1`)",
        )
        self.assertTranslation("Headers: X-A, ", "HeaderRegexp(`X-A`, `.*`)")
        self.assertTranslation("Headers:X-A,1,X-A,2", "Header(`X-A`, `2`)")

    def test_headersRegexp(self) -> None:
        """
        HeadersRegexp pairs become ANDed HeaderRegexp matchers.
        """
        self.assertTranslation(
            "HeadersRegexp:Content-Type,application/(text|json)",
            "HeaderRegexp(`Content-Type`, `application/(text|json)`)",
        )

    def test_query(self) -> None:
        """
        Query pairs become ANDed Query matchers, an empty value a presence check, and templates QueryRegexp.
        """
        self.assertTranslation("Query:a=1,b=2", "Query(`a`, `1`) && Query(`b`, `2`)")
        self.assertTranslation("Query:a=", "QueryRegexp(`a`, `.*`)")
        self.assertTranslation("Query:id={id:[0-9]+}", "QueryRegexp(`id`, `^(?P<v0>[0-9]+)$`)")
        self.assertTranslation("Query:a,1", "Query(`a`, `1`)")

    def test_templates(self) -> None:
        """
        gorilla/mux templates become anchored regexps.
        """
        self.assertTranslation("Path:/a/{id:[0-9]+}", "PathRegexp(`^/a/(?P<v0>[0-9]+)$`)")
        self.assertTranslation("Path:/a/{id}", "PathRegexp(`^/a/(?P<v0>[^/]+)$`)")
        self.assertTranslation("PathPrefix:/a/{id:[0-9]+}", "PathRegexp(`^/a/(?P<v0>[0-9]+)`)")
        self.assertTranslation(
            "HostRegexp:{sub:[a-z]+}.example.com",
            r"HostRegexp(`(?i)^(?P<v0>[a-z]+)\.example\.com$`)",
        )

    def test_neverMatchingArguments(self) -> None:
        """
        Path templates gorilla/mux could not build translate to a term that never matches (Traefik 1.x accepted them silently).
        """
        self.assertTranslation("Path:foo", NEVER)
        self.assertTranslation("Path:/a,foo", "Path(`/a`)")
        self.assertTranslation("Path:/{a", NEVER)
        self.assertTranslation("PathStrip:/a/{x:(}", NEVER, [("stripPrefix", {"prefixes": ["/a/{x:(}"]})])
        self.assertTranslation("HostRegexp:{bad", NEVER)
        self.assertTranslation("PathPrefix:bar/{x}", NEVER)

    def test_plainPrefixWithoutSlash(self) -> None:
        """
        A plain PathPrefix argument without a leading slash is a string prefix of the path (Traefik 1.x's own matcher).
        """
        self.assertTranslation("PathPrefix:bar", "PathRegexp(`^bar`)")
        self.assertTranslation("PathPrefix:b.r/", r"PathRegexp(`^b\.r/`)")

    def test_severalRulesAnd(self) -> None:
        """
        The routes of one frontend must all match.
        """
        self.assertTranslation(
            ["Host:a.com", "PathPrefix:/api,/v2"],
            "Host(`a.com`) && (PathPrefix(`/api`) || PathPrefix(`/v2`))",
            priority=len("Host:a.com") + len("PathPrefix:/api,/v2"),
        )

    def test_priorityIsSumOfLengths(self) -> None:
        """
        The default priority is the summed byte length of the v1 rules.
        """
        self.assertEqual(translate("Host:foo.bar").priority, 12)
        self.assertEqual(translate("Host: Foo.Bar ; Path:/FOObar").priority, 28)
        self.assertEqual(translate(["PathPrefix:/a", "Host:é.com"]).priority, 13 + 11)

    def test_errors(self) -> None:
        """
        Empty rules, unknown matchers, missing arguments and odd pairs are errors.
        """
        for rules in [
            "",
            [""],
            "Foo:bar",
            "Host",
            "Host:",
            " :a",
            "host:a.com",
            "Headers:X-A",
            "HeadersRegexp:X-A,(a",
            "Path: /path1;Query:param_one=true, /path2",
            "Query:foo=b=ar",
            "Query:a={x",
        ]:
            self.assertRaises(RuleError, translate, rules)

    def test_quote(self) -> None:
        """
        Values are backquoted unless they hold a backquote or a carriage return.
        """
        self.assertEqual(quote("/a b"), "`/a b`")
        self.assertEqual(quote("a`b"), '"a`b"')
        self.assertEqual(quote('a`"\\\n\r'), '"a`\\"\\\\\\n\\r"')
        self.assertEqual(translate("Path:/a`b").rule, 'Path("/a`b")')

    def test_hostsOf(self) -> None:
        """
        The translated rule gives the v1 rule's domains, lower-cased (Traefik 1.x ParseDomains).
        """
        self.assertEqual(hostsOf(translate("Host:foo.bar,test.bar").rule), ["foo.bar", "test.bar"])
        self.assertEqual(hostsOf(translate("Path:/test").rule), [])
        self.assertEqual(hostsOf(translate("Host:foo.bar;Path:/test").rule), ["foo.bar"])
        self.assertEqual(hostsOf(translate("Host: Foo.Bar ;Path:/test").rule), ["foo.bar"])


class V1MatchTests(SynchronousTestCase):
    """
    The translated rule matches the requests the v1 rule matched in Traefik 1.7.
    """

    def assertMatches(self, rules: str | Sequence[str], table: Mapping[str, bool], **requestArgs: Any) -> None:
        matcher = compileHTTPRule(translate(rules).rule)
        got = {url: matcher(request(url, **requestArgs)) for url in table}
        self.assertEqual(got, dict(table), rules)

    def test_oneRule(self) -> None:
        """
        Host:foo.bar matches http://foo.bar.
        """
        self.assertMatches("Host:foo.bar", {"http://foo.bar": True, "http://FOO.BAR:80/x": True, "http://bar": False})

    def test_twoRules(self) -> None:
        """
        Host: Foo.Bar ; Path:/FOObar matches the exact, case-sensitive path on the case-insensitive host.
        """
        self.assertMatches(
            "Host: Foo.Bar ; Path:/FOObar",
            {"http://foo.bar/foobar": False, "http://foo.bar/FOObar": True, "http://x.bar/FOObar": False},
        )

    def test_hostRegexp(self) -> None:
        """
        HostRegexp templates match the whole host case-insensitively (Traefik 1.7's TestHostRegexp).
        """
        urls = {
            "http://foo.bar.com": True,
            "http://bar.com": True,
            "http://fooubar.com": False,
            "http://barucom": False,
            "http://barcom": False,
        }
        self.assertMatches(r"HostRegexp:{subdomain:(foo\.)?bar\.com}", urls)
        self.assertMatches(r"HostRegexp:{subdomain:(?:foo\.)?bar\.com}", urls)
        urls = {
            "http://FOO.bar.com": True,
            "http://foo.bar.com": True,
            "http://fooubar.com": False,
            "http://barucom": False,
            "http://barcom": False,
        }
        self.assertMatches(r"HostRegexp:{dummy:[A-Za-z-]+\.bar\.com}", urls)
        self.assertMatches(r"HostRegexp:{dummy:[a-z-]+\.bar\.com}", urls)
        self.assertMatches("HostRegexp:foo.bar.com", urls)

    def test_pathPrefix(self) -> None:
        """
        PathPrefix is a plain string prefix; without a leading slash it never matches a path (Traefik 1.7's TestPathPrefix).
        """
        self.assertMatches("PathPrefix:/bar", {"http://foo.com/bar": True, "http://foo.com/bar/": True})
        self.assertMatches("PathPrefix:/bar/", {"http://foo.com/bar": False, "http://foo.com/bar/": True})
        self.assertMatches("PathPrefix:bar", {"http://foo.com/bar": False, "http://foo.com/bar/": False})
        self.assertMatches("PathPrefix:bar/", {"http://foo.com/bar": False, "http://foo.com/bar/": False})
        self.assertMatches("PathPrefix:/foo", {"http://a/foo": True, "http://a/fo": False, "http://a/foobar": True})

    def test_pathPrefixTemplate(self) -> None:
        """
        A PathPrefix with braces is a gorilla/mux prefix template.
        """
        self.assertMatches(
            "PathPrefix:/api/{version:v[0-9]+}",
            {"http://a/api/v1/users": True, "http://a/api/v1": True, "http://a/api/x1": False},
        )

    def test_pathTemplates(self) -> None:
        """
        Path templates are anchored; a bare {name} matches one segment.
        """
        self.assertMatches(
            "Path:/articles/{category}/{id:[0-9]+}",
            {
                "http://a/articles/tech/42": True,
                "http://a/articles/tech/42/x": False,
                "http://a/articles/a/b/42": False,
                "http://a/articles/tech/x": False,
            },
        )

    def test_invalidPathNeverMatches(self) -> None:
        """
        A Path without leading slash is accepted but matches nothing.
        """
        self.assertMatches("Path:foo", {"http://a/foo": False, "http://a/": False})
        self.assertMatches("Host:a;Path:/x,foo", {"http://a/x": True, "http://a/foo": False})

    def test_method(self) -> None:
        """
        Method is an OR of upper-cased methods.
        """
        matcher = compileHTTPRule(translate("Method:GET,post").rule)
        for method, expected in [("GET", True), ("POST", True), ("PUT", False)]:
            self.assertEqual(matcher(request(method=method)), expected, method)

    def test_headers(self) -> None:
        """
        Headers pairs must all be present with their values; an empty value only needs the header.
        """
        matcher = compileHTTPRule(translate("Headers:Content-Type,application/json,X-A, ").rule)
        for headers, expected in [
            ({"Content-Type": "application/json", "X-A": "anything"}, True),
            ({"Content-Type": "application/json", "X-A": ""}, True),
            ({"Content-Type": "application/json"}, False),
            ({"Content-Type": "text/plain", "X-A": "1"}, False),
        ]:
            self.assertEqual(matcher(request(headers=headers)), expected, headers)

    def test_headersRegexp(self) -> None:
        """
        HeadersRegexp pairs match values with unanchored regexps.
        """
        matcher = compileHTTPRule(translate("HeadersRegexp:Content-Type,application/(text|json)").rule)
        for value, expected in [("application/json", True), ("application/text", True), ("application/foo", False)]:
            self.assertEqual(matcher(request(headers={"Content-Type": value})), expected, value)

    def test_query(self) -> None:
        """
        Query pairs must all match; a template value is an anchored regexp.
        """
        self.assertMatches(
            "Query:a=1,b=",
            {"http://x/?a=1&b=2": True, "http://x/?a=1&b": True, "http://x/?a=1": False, "http://x/?a=2&b=1": False},
        )
        self.assertMatches(
            "Query:id={id:[0-9]+}",
            {"http://x/?id=42": True, "http://x/?id=4a": False, "http://x/?id=": False, "http://x/": False},
        )

    def test_severalRules(self) -> None:
        """
        Several routes of a frontend must all match.
        """
        self.assertMatches(
            ["Host:a.com,b.com", "PathPrefix:/api"],
            {"http://a.com/api": True, "http://b.com/api/x": True, "http://a.com/x": False, "http://c.com/api": False},
        )

    def test_modifiersMatchEverything(self) -> None:
        """
        A rule made only of modifiers matches every request.
        """
        self.assertMatches("AddPrefix:/x", {"http://a/": True, "http://b/c/d": True})
