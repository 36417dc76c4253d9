"""
Tests for L{relayd.config.schema} (the declarative decoder, flat keys from
flags, environment variables and labels) and L{relayd.config.errors}.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import assertDecodeErrors
from relayd.config.errors import ConfigError, ConfigErrors, flatten, joinPath, raiseAll
from relayd.config.schema import (
    decode,
    field,
    fieldKeys,
    flatToTree,
    isModel,
    nearest,
    toRaw,
    typeAt,
    unknownKeyMessage,
)
from relayd.config.static import StaticConfig
from relayd.config.types import Duration, FrozenMap

frozen = attrs.frozen(kw_only=True)


def _nonNegative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _even(instance: Any, attribute: Any, value: int) -> None:
    if value % 2:
        raise ValueError(f"size must be even, got {value}")


@frozen
class Child:
    host: str
    port: int = 80

    def _validate(self):
        if self.port >= 1000:
            yield "port", f"must be below 1000, got {self.port}"


@frozen
class Empty:
    pass


@frozen
class Kind:
    __oneof__ = True

    first: Child | None = None
    second: Empty | None = None


@frozen
class Sized:
    size: int = attrs.field(default=0, validator=_even)


@frozen
class Options:
    __ignored__ = {"legacy": "legacy is ignored by relayd"}

    name: str = ""
    count: int = 0
    ratio: float = 0.0
    enabled: bool = False
    timeout: Duration = Duration(0)
    mode: Literal["fast", "slow"] = "fast"
    tags: tuple[str, ...] = ()
    labels: FrozenMap[str, str] = field(factory=FrozenMap)
    limit: int = field(0, check=_nonNegative)
    klass: str = field("", key="class")
    maybe: int | None = None
    child: Child | None = None
    children: tuple[Child, ...] = ()
    named: FrozenMap[str, Child] = field(factory=FrozenMap)
    kind: Kind | None = None
    sized: Sized | None = None
    empty: Empty | None = None


class DecodeTestCase(SynchronousTestCase):
    """
    Helpers to decode and to check the errors.
    """

    def decodeOptions(self, raw: Any) -> Options:
        value, warnings = decode(Options, raw)
        self.assertEqual(warnings, [])
        return value

    def assertErrors(self, raw: Any, *expected: tuple[str, str], cls: type = Options) -> None:
        """
        Decoding C{raw} fails with exactly these (path, message substring) pairs.
        """
        assertDecodeErrors(self, lambda r: decode(cls, r), raw, *expected)


class DecodeScalarTests(DecodeTestCase):
    """
    Scalars: strings are coerced (flags and labels decode like files), wrong
    types fail with the key path and what was found.
    """

    def test_defaults(self) -> None:
        """
        An empty table decodes to the model's defaults.
        """
        self.assertEqual(self.decodeOptions({}), Options())

    def test_nativeValues(self) -> None:
        """
        Native values of the right type are taken as they are.
        """
        value = self.decodeOptions(
            {"name": "n", "count": 3, "ratio": 1.5, "enabled": True, "timeout": 2, "mode": "slow"}
        )
        self.assertEqual(
            value,
            Options(
                name="n", count=3, ratio=1.5, enabled=True, timeout=Duration(2), mode="slow"
            ),
        )

    def test_stringsCoerced(self) -> None:
        """
        Strings decode to integers, floats, booleans (Go syntax) and durations.
        """
        value = self.decodeOptions(
            {"count": " 3 ", "ratio": "1.5", "enabled": "t", "timeout": "1m30s", "mode": "SLOW"}
        )
        self.assertEqual(value.count, 3)
        self.assertEqual(value.ratio, 1.5)
        self.assertIs(value.enabled, True)
        self.assertEqual(value.timeout, 90)
        self.assertIsInstance(value.timeout, Duration)
        self.assertEqual(value.mode, "slow")

    def test_numbersToStrings(self) -> None:
        """
        Numbers given for string keys become their text, and whole floats are integers.
        """
        value = self.decodeOptions({"name": 5, "count": 4.0})
        self.assertEqual(value.name, "5")
        self.assertEqual(value.count, 4)

    def test_wrongTypes(self) -> None:
        """
        A value of the wrong type fails at its key path, saying what was expected and found.
        """
        cases = [
            ("name", True, "expected a string, got the boolean true"),
            ("name", [], "expected a string, got a list"),
            ("name", {}, "expected a string, got a table"),
            ("name", None, "expected a string, got an empty value"),
            ("count", "x", "expected an integer, got the string 'x'"),
            ("count", 1.5, "expected an integer, got the number 1.5"),
            ("count", False, "expected an integer, got the boolean false"),
            ("count", "1.0", "expected an integer, got the string '1.0'"),
            ("ratio", "x", "expected a number, got the string 'x'"),
            ("ratio", True, "expected a number, got the boolean true"),
            ("ratio", [1], "expected a number, got a list"),
            ("enabled", "yes", "expected true or false, got 'yes'"),
            ("enabled", 1, "expected true or false, got 1"),
            ("timeout", "soon", "invalid duration 'soon'"),
            ("timeout", "3d", "unknown unit 'd' in duration '3d'"),
            ("timeout", True, 'expected a duration such as "10s", got true'),
            ("mode", "medium", "expected one of \"fast\", \"slow\", got the string 'medium'"),
            ("mode", 1, 'expected one of "fast", "slow", got the number 1'),
            ("mode", None, 'expected one of "fast", "slow", got an empty value'),
            ("tags", {"a": "b"}, "expected a list, got a table"),
            ("tags", True, "expected a string, got the boolean true"),
            ("labels", ["a"], "expected a table of names, got a list"),
            ("labels", "a", "expected a table of names, got the string 'a'"),
            ("child", "x", "expected a table of keys, got the string 'x'"),
            ("child", [], "expected a table of keys, got a list"),
            ("children", "x", "expected a list, got the string 'x'"),
            ("maybe", "x", "expected an integer, got the string 'x'"),
        ]
        for key, raw, message in cases:
            with self.subTest(key=key, raw=raw):
                self.assertErrors({key: raw}, (key, message))

    def test_otherTypesDescribed(self) -> None:
        """
        Values of other types (YAML dates) are named by their type.
        """
        import datetime

        self.assertErrors(
            {"name": datetime.date(2024, 1, 1)}, ("name", "expected a string, got a date value")
        )

    def test_listItemErrors(self) -> None:
        """
        A bad list item is reported with its index.
        """
        self.assertErrors({"tags": ["a", True]}, ("tags[1]", "expected a string, got the boolean true"))

    def test_checkFails(self) -> None:
        """
        A field's check rejects a well-typed value at the field's path.
        """
        self.assertErrors({"limit": -1}, ("limit", "must not be negative, got -1"))

    def test_optionalScalar(self) -> None:
        """
        An optional scalar is None when absent or empty, and decoded when given.
        """
        self.assertIsNone(self.decodeOptions({}).maybe)
        self.assertIsNone(self.decodeOptions({"maybe": None}).maybe)
        self.assertEqual(self.decodeOptions({"maybe": "7"}).maybe, 7)

    def test_unsupportedType(self) -> None:
        """
        A model field of a type the decoder does not know is a programming error.
        """

        @frozen
        class Bad:
            value: complex = 0j

        with self.assertRaises(TypeError) as caught:
            decode(Bad, {"value": 1})
        self.assertIn("unsupported model type", str(caught.exception))
        self.assertIn("at value", str(caught.exception))


class DecodeKeysTests(DecodeTestCase):
    """
    Keys: case-insensitive, suggestions for unknown ones, required, set twice,
    overridden names, ignored ones.
    """

    def test_caseInsensitiveKeys(self) -> None:
        """
        Keys match whatever their case.
        """
        value = self.decodeOptions({"NAME": "a", "Count": 2, "cHiLd": {"HOST": "h"}})
        self.assertEqual((value.name, value.count, value.child), ("a", 2, Child(host="h")))

    def test_mapKeysKeepCase(self) -> None:
        """
        Names in maps keep the case they were written with.
        """
        value = self.decodeOptions({"labels": {"X-Header": "v", "x-header": "w"}})
        self.assertEqual(list(value.labels), ["X-Header", "x-header"])

    def test_unknownKeySuggests(self) -> None:
        """
        An unknown key close to a known one names it.
        """
        self.assertErrors({"nmae": "x"}, ("nmae", 'unknown key, did you mean "name"?'))

    def test_unknownKeySuggestsWhateverTheCase(self) -> None:
        """
        The suggestion is spelled the way the model spells it.
        """
        self.assertErrors({"CHILDREN2": []}, ("CHILDREN2", 'unknown key, did you mean "children"?'))

    def test_unknownKeyListsKeys(self) -> None:
        """
        An unknown key like no known one lists the keys the section takes.
        """
        self.assertErrors(
            {"zzzzzz": 1},
            ("zzzzzz", "unknown key; expected one of name, count, ratio, enabled, timeout"),
        )

    def test_unknownKeyInEmptySection(self) -> None:
        """
        A section that takes no keys says so.
        """
        self.assertErrors(
            {"empty": {"x": 1}}, ("empty.x", "unknown key; this section takes no keys")
        )

    def test_requiredMissing(self) -> None:
        """
        A missing required key is reported at its own path.
        """
        self.assertErrors({"child": {}}, ("child.host", "required key is missing"))

    def test_requiredPresentButInvalid(self) -> None:
        """
        A required key that is present but invalid is reported once, as invalid.
        """
        self.assertErrors({"child": {"host": []}}, ("child.host", "expected a string, got a list"))

    def test_setTwice(self) -> None:
        """
        The same key written twice in different case fails and names both spellings.
        """
        self.assertErrors(
            {"name": "a", "NAME": "b"},
            ("name", 'set twice (as "name" and "NAME"); keys are case-insensitive'),
        )

    def test_keyOverride(self) -> None:
        """
        A field can use a key that is a Python keyword, and only that key.
        """
        self.assertEqual(self.decodeOptions({"class": "c"}).klass, "c")
        self.assertEqual(self.decodeOptions({"CLASS": "c"}).klass, "c")
        self.assertErrors({"klass": "c"}, ("klass", 'unknown key, did you mean "class"?'))

    def test_ignoredKeyWarns(self) -> None:
        """
        A known but unsupported key is skipped with a warning naming its path.
        """
        value, warnings = decode(Options, {"LEGACY": {"anything": 1}, "name": "n"})
        self.assertEqual(value, Options(name="n"))
        self.assertEqual(warnings, ["LEGACY: legacy is ignored by relayd"])

    def test_ignoredKeyPathInMap(self) -> None:
        """
        Warnings from nested sections carry the full path.
        """

        @frozen
        class Outer:
            items: FrozenMap[str, Options] = field(factory=FrozenMap)

        _, warnings = decode(Outer, {"items": {"A": {"legacy": True}}})
        self.assertEqual(warnings, ["items.A.legacy: legacy is ignored by relayd"])

    def test_pathPrefix(self) -> None:
        """
        The path argument prefixes every error path.
        """
        with self.assertRaises(ConfigError) as caught:
            decode(Options, {"count": "x"}, "root.section")
        self.assertEqual(caught.exception.path, "root.section.count")

    def test_topLevelNotATable(self) -> None:
        """
        A document that is not a table fails at the empty path.
        """
        self.assertErrors([1], ("", "expected a table of keys, got a list"))

    def test_allErrorsAtOnce(self) -> None:
        """
        Every problem in a document is reported, in document order, as one ConfigErrors.
        """
        with self.assertRaises(ConfigErrors) as caught:
            decode(Options, {"count": "x", "nmae": 1, "child": {"port": "y"}})
        self.assertEqual(
            [e.path for e in caught.exception.errors],
            ["count", "nmae", "child.port", "child.host"],
        )


class DecodeSectionTests(DecodeTestCase):
    """
    Sections: optional ones, lists, maps, one-of, cross-field checks.
    """

    def test_optionalSectionEnabled(self) -> None:
        """
        An optional section is enabled with defaults by an empty table, null or true.
        """
        for raw in ({}, None, True):
            with self.subTest(raw=raw):
                self.assertEqual(self.decodeOptions({"empty": raw}).empty, Empty())

    def test_optionalSectionDisabled(self) -> None:
        """
        An optional section is off when absent or false.
        """
        self.assertIsNone(self.decodeOptions({}).empty)
        self.assertIsNone(self.decodeOptions({"empty": False}).empty)

    def test_optionalSectionStringTrue(self) -> None:
        """
        The string "true" in a file is not a table and fails.
        """
        self.assertErrors({"empty": "true"}, ("empty", "expected a table of keys, got the string 'true'"))

    def test_listOfSections(self) -> None:
        """
        Lists of sections decode each item; errors name the index.
        """
        value = self.decodeOptions({"children": [{"host": "a"}, {"host": "b", "port": 2}]})
        self.assertEqual(value.children, (Child(host="a"), Child(host="b", port=2)))
        self.assertErrors({"children": [{"host": "a"}, {}]}, ("children[1].host", "required key is missing"))

    def test_listFromIndexTable(self) -> None:
        """
        A table whose keys are all indices is a list, in index order.
        """
        value = self.decodeOptions({"tags": {"10": "c", "2": "b", "0": "a"}})
        self.assertEqual(value.tags, ("a", "b", "c"))

    def test_nonAsciiDigitKeysAreNotIndices(self) -> None:
        """
        Keys made of non-ASCII digits are not list indices, and fail cleanly.
        """
        self.assertErrors({"tags": {"\u00b2": "a"}}, ("tags", "expected a list, got a table"))

    def test_singleValueIsList(self) -> None:
        """
        One value for a list of scalars is a list of one, and its errors name the key.
        """
        self.assertEqual(self.decodeOptions({"tags": "a"}).tags, ("a",))
        self.assertEqual(self.decodeOptions({"tags": None}).tags, ())
        self.assertErrors({"maybe": 1, "tags": True}, ("tags", "expected a string"))

    def test_mapOfSections(self) -> None:
        """
        Maps of sections decode every value; errors name the map key.
        """
        value = self.decodeOptions({"named": {"Web": {"host": "w"}}})
        self.assertEqual(value.named, FrozenMap({"Web": Child(host="w")}))
        self.assertIsInstance(value.named, FrozenMap)
        self.assertErrors({"named": {"Web": {"host": "w", "port": "x"}}}, ("named.Web.port", "expected an integer"))
        self.assertEqual(self.decodeOptions({"named": None}).named, FrozenMap())

    def test_validate(self) -> None:
        """
        Cross-field checks report at the path of the key they name.
        """
        self.assertErrors({"child": {"host": "h", "port": 1000}}, ("child.port", "must be below 1000, got 1000"))

    def test_validateNotRunOnInvalidSection(self) -> None:
        """
        Cross-field checks do not run on a section that already failed.
        """
        self.assertErrors({"child": {"port": 5000}}, ("child.host", "required key is missing"))

    def test_oneOfNone(self) -> None:
        """
        A one-of section with nothing set names every choice.
        """
        self.assertErrors({"kind": {}}, ("kind", "exactly one of first, second must be set"))

    def test_oneOfTwo(self) -> None:
        """
        A one-of section with two choices set names the ones that were set.
        """
        self.assertErrors(
            {"kind": {"first": {"host": "h"}, "second": {}}},
            ("kind", "exactly one of first, second must be set, got first and second"),
        )

    def test_oneOfFalseDoesNotCount(self) -> None:
        """
        A choice set to false does not count as set.
        """
        value = self.decodeOptions({"kind": {"first": False, "second": True}})
        self.assertEqual(value.kind, Kind(second=Empty()))

    def test_constructorError(self) -> None:
        """
        A ValueError raised while building the value is reported at the section path.
        """
        self.assertErrors({"sized": {"size": 3}}, ("sized", "size must be even, got 3"))


class FlatToTreeTests(DecodeTestCase):
    """
    Tests for L{flatToTree}: flags, environment variables and labels.
    """

    def tree(self, *items: tuple[str, str], cls: type = Options) -> dict:
        return flatToTree(cls, items)

    def assertFlatError(self, items: list[tuple[str, str]], path: str, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            flatToTree(Options, items)
        self.assertEqual(caught.exception.path, path)
        self.assertIn(message, caught.exception.message)

    def test_scalars(self) -> None:
        """
        Flat keys place their values at the model's own spelling of each key.
        """
        self.assertEqual(
            self.tree(("NAME", "n"), ("child.HOST", "h"), ("child.port", "8")),
            {"name": "n", "child": {"host": "h", "port": "8"}},
        )

    def test_mapKeysKeepCase(self) -> None:
        """
        Map names keep their case while model keys are matched case-insensitively.
        """
        self.assertEqual(
            self.tree(("NAMED.Web.HOST", "h"), ("labels.X-Id", "1")),
            {"named": {"Web": {"host": "h"}}, "labels": {"X-Id": "1"}},
        )

    def test_commaLists(self) -> None:
        """
        Lists of scalars are comma-separated and each item is trimmed.
        """
        self.assertEqual(self.tree(("tags", "a, b ,c")), {"tags": ["a", "b", "c"]})

    def test_bracketIndices(self) -> None:
        """
        C{[n]} indexes lists of sections and of scalars.
        """
        tree = self.tree(
            ("children[0].host", "a"),
            ("children[1].host", "b"),
            ("children[1].port", "2"),
            ("tags[0]", "x"),
        )
        self.assertEqual(
            tree, {"children": {"0": {"host": "a"}, "1": {"host": "b", "port": "2"}}, "tags": {"0": "x"}}
        )
        value, _ = decode(Options, tree)
        self.assertEqual(value.children, (Child(host="a"), Child(host="b", port=2)))
        self.assertEqual(value.tags, ("x",))

    def test_dotIndices(self) -> None:
        """
        C{.n.} indexes lists the same way, as environment variables write them.
        """
        self.assertEqual(
            self.tree(("children.0.host", "a")), self.tree(("children[0].host", "a"))
        )

    def test_bareSection(self) -> None:
        """
        A bare section key ("true" or empty) enables it with defaults; "false" turns it off.
        """
        self.assertEqual(self.tree(("empty", "true")), {"empty": {}})
        self.assertEqual(self.tree(("empty", "")), {"empty": {}})
        self.assertEqual(self.tree(("empty", "false")), {"empty": False})
        self.assertEqual(self.decodeOptions(self.tree(("empty", "true"))).empty, Empty())
        self.assertIsNone(self.decodeOptions(self.tree(("empty", "false"))).empty)

    def test_bareSectionKeepsSubKeys(self) -> None:
        """
        A bare section key after its sub-keys keeps them.
        """
        self.assertEqual(
            self.tree(("child.host", "h"), ("child", "true")), {"child": {"host": "h"}}
        )

    def test_subKeysAfterFalse(self) -> None:
        """
        Sub-keys after a section set to false enable it again.
        """
        self.assertEqual(self.tree(("child", "false"), ("child.host", "h")), {"child": {"host": "h"}})

    def test_flatTlsTrue(self) -> None:
        """
        A label such as C{...tls=true} gives the same router as C{tls: {}} in a file.
        """
        from relayd.config.dynamic import DynamicConfig

        tree = self.tree(("http.routers.r.tls", "true"), ("http.routers.r.rule", "Path(`/`)"), cls=DynamicConfig)
        value, _ = decode(DynamicConfig, tree)
        fromFile, _ = decode(DynamicConfig, {"http": {"routers": {"r": {"rule": "Path(`/`)", "tls": {}}}}})
        self.assertEqual(value, fromFile)

    def test_sectionValue(self) -> None:
        """
        A section given a value that is not a boolean fails.
        """
        self.assertFlatError([("child", "x")], "child", "this key is a section; set one of its sub-keys")

    def test_listOfSectionsNeedsIndex(self) -> None:
        """
        A list of sections cannot take a comma-separated value.
        """
        self.assertFlatError(
            [("children", "a,b")],
            "children",
            "this key is a list of sections; set its items' keys with [n] indices",
        )

    def test_badIndex(self) -> None:
        """
        A list key followed by something that is not an index fails.
        """
        self.assertFlatError(
            [("children.host", "a")], "children.host", "expected a list index such as [0], got 'host'"
        )
        self.assertFlatError(
            [("children.\u00b2.host", "a")], "children.\u00b2", "expected a list index such as [0]"
        )

    def test_listTwice(self) -> None:
        """
        A list given both comma-separated and with indices fails, in either order.
        """
        for items in ([("tags", "a,b"), ("tags[0]", "c")], [("tags[0]", "c"), ("tags", "a,b")]):
            with self.subTest(items=items):
                self.assertFlatError(
                    items, "tags", "set both as a comma-separated list and with [n] indices"
                )

    def test_itemValueAndSection(self) -> None:
        """
        A list item given both a value and sub-keys fails, in either order.
        """
        for items in (
            [("children[0]", "x"), ("children[0].host", "h")],
            [("children[0].host", "h"), ("children[0]", "x")],
        ):
            with self.subTest(items=items):
                self.assertFlatError(
                    items, "children[0]", "set both as a single value and with sub-keys"
                )

    def test_unknownKey(self) -> None:
        """
        An unknown flat key fails with the path written the model's way and a suggestion.
        """
        self.assertFlatError([("CHILD.hots", "h")], "child.hots", 'unknown key, did you mean "host"?')

    def test_subKeysOnValue(self) -> None:
        """
        Sub-keys under a single value fail and say which key is a value.
        """
        self.assertFlatError(
            [("child.host.x", "h")],
            "child.host.x",
            "unknown key: child.host is a single value and takes no sub-keys",
        )
        self.assertFlatError(
            [("tags[0].x", "h")],
            "tags[0].x",
            "unknown key: tags[0] is a single value and takes no sub-keys",
        )

    def test_ignoredKeyWarnsOnDecode(self) -> None:
        """
        Ignored keys survive as one entry, so decoding warns about them as for files.
        """
        tree = self.tree(("legacy.a", "1"), ("LEGACY.b", "2"), ("name", "n"))
        value, warnings = decode(Options, tree)
        self.assertEqual(value, Options(name="n"))
        self.assertEqual(warnings, ["legacy: legacy is ignored by relayd"])

    def test_root(self) -> None:
        """
        The root argument prefixes error paths.
        """
        with self.assertRaises(ConfigError) as caught:
            flatToTree(Options, [("nope", "1")], root="labels")
        self.assertEqual(caught.exception.path, "labels.nope")

    def test_allErrors(self) -> None:
        """
        Every bad flat key is reported.
        """
        with self.assertRaises(ConfigErrors) as caught:
            flatToTree(Options, [("nope", "1"), ("child", "x")])
        self.assertEqual([e.path for e in caught.exception.errors], ["nope", "child"])


# Hypothesis: a static configuration given as flat keys decodes exactly like
# the same configuration written as a nested document.

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
CIDRS = st.lists(st.sampled_from(["10.0.0.0/8", "127.0.0.1", "::1", "192.168.0.0/16"]), min_size=1, max_size=3)
LEVELS = st.sampled_from(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"])


@st.composite
def staticConfigs(draw: Any) -> tuple[list[tuple[str, str]], dict]:
    """
    A few keys of a static configuration, as flat pairs and as a nested dict.
    """

    def cased(key: str) -> str:
        return draw(st.sampled_from([key, key.lower(), key.upper()]))

    flat: list[tuple[str, str]] = []
    nested: dict[str, Any] = {}
    for name in draw(st.lists(NAMES, max_size=3, unique=True)):
        entry: dict[str, Any] = {}
        port = draw(st.integers(1, 65535))
        flat.append((f"{cased('entryPoints')}.{name}.{cased('address')}", f":{port}"))
        entry["address"] = f":{port}"
        if draw(st.booleans()):
            reuse = draw(st.booleans())
            flat.append((f"{cased('entryPoints')}.{name}.{cased('reusePort')}", str(reuse).lower()))
            entry["reusePort"] = reuse
        if draw(st.booleans()):
            seconds = draw(st.integers(0, 10**5))
            key = f"{cased('entryPoints')}.{name}.transport.{cased('respondingTimeouts')}.readTimeout"
            flat.append((key, f"{seconds}s"))
            entry["transport"] = {"respondingTimeouts": {"readTimeout": seconds}}
        if draw(st.booleans()):
            cidrs = draw(CIDRS)
            flat.append((f"entrypoints.{name}.forwardedHeaders.trustedIPs", " , ".join(cidrs)))
            entry["forwardedHeaders"] = {"trustedIPs": cidrs}
        nested.setdefault("entryPoints", {})[name] = entry
    if draw(st.booleans()):
        level = draw(LEVELS)
        flat.append((f"{cased('log')}.{cased('level')}", draw(st.sampled_from([level, level.lower()]))))
        nested["log"] = {"level": level}
    if draw(st.booleans()):
        flat.append((cased("api"), "true"))
        nested["api"] = None
        if draw(st.booleans()):
            insecure = draw(st.booleans())
            flat.append(("api.insecure", str(insecure)))
            nested["api"] = {"insecure": insecure}
    if draw(st.booleans()):
        flat.append(("providers.providersThrottleDuration", "1m30s"))
        nested["providers"] = {"providersThrottleDuration": 90}
    domains = draw(st.lists(NAMES, max_size=2))
    if domains and "entryPoints" in nested:
        name = next(iter(nested["entryPoints"]))
        for index, domain in enumerate(domains):
            flat.append((f"entryPoints.{name}.http.tls.domains[{index}].main", domain))
            flat.append((f"entryPoints.{name}.http.tls.domains.{index}.sans", f"a.{domain}, b.{domain}"))
        nested["entryPoints"][name]["http"] = {
            "tls": {"domains": [{"main": d, "sans": [f"a.{d}", f"b.{d}"]} for d in domains]}
        }
    return flat, nested


class FlatEquivalenceTests(SynchronousTestCase):
    """
    Property tests: flat keys and nested documents mean the same thing.
    """

    @given(staticConfigs())
    def test_flatEqualsNested(self, example: tuple[list[tuple[str, str]], dict]) -> None:
        """
        Decoding flat keys through flatToTree gives the same static configuration as the nested dict.
        """
        flat, nested = example
        fromFlat, flatWarnings = decode(StaticConfig, flatToTree(StaticConfig, flat))
        fromNested, nestedWarnings = decode(StaticConfig, nested)
        self.assertEqual(fromFlat, fromNested)
        self.assertEqual(flatWarnings, nestedWarnings)


class IntrospectionTests(SynchronousTestCase):
    """
    Tests for L{typeAt}, L{fieldKeys}, L{isModel}, L{nearest} and L{toRaw}.
    """

    def test_typeAt(self) -> None:
        """
        C{typeAt} follows models, maps and list indices, case-insensitively.
        """
        self.assertIs(typeAt(Options, "NAME"), str)
        self.assertIs(typeAt(Options, "child"), Child)
        self.assertIs(typeAt(Options, "named.anything.port"), int)
        self.assertIs(typeAt(Options, "children[0].host"), str)
        self.assertIs(typeAt(Options, "children.0.host"), str)
        self.assertIs(typeAt(Options, "timeout"), Duration)
        self.assertIs(typeAt(Options, "maybe"), int)
        self.assertEqual(typeAt(Options, "tags"), tuple[str, ...])
        self.assertIsNone(typeAt(Options, "nope"))
        self.assertIsNone(typeAt(Options, "name.x"))
        self.assertIsNone(typeAt(Options, "children.x"))

    def test_typeAtStatic(self) -> None:
        """
        C{typeAt} answers for Traefik's flag spellings of the static configuration.
        """
        self.assertIs(typeAt(StaticConfig, "entrypoints.web.address"), str)
        self.assertIs(typeAt(StaticConfig, "api.insecure"), bool)
        self.assertTrue(isModel(typeAt(StaticConfig, "api")))

    def test_fieldKeys(self) -> None:
        """
        C{fieldKeys} lists the keys users write, overrides included, in model order.
        """
        self.assertEqual(fieldKeys(Child), ["host", "port"])
        self.assertIn("class", fieldKeys(Options))
        self.assertNotIn("klass", fieldKeys(Options))
        self.assertEqual(fieldKeys(StaticConfig)[0], "global")

    def test_isModel(self) -> None:
        """
        Only attrs classes are models.
        """
        self.assertTrue(isModel(Child))
        self.assertFalse(isModel(Child(host="h")))
        self.assertFalse(isModel(dict))

    def test_nearest(self) -> None:
        """
        C{nearest} finds a close key whatever the case, and nothing for unrelated keys.
        """
        self.assertEqual(nearest("ADRESS", ["address", "port"]), "address")
        self.assertIsNone(nearest("zzz", ["address", "port"]))
        self.assertIsNone(nearest("x", []))
        self.assertEqual(unknownKeyMessage("x", []), "unknown key; this section takes no keys")

    def test_toRaw(self) -> None:
        """
        C{toRaw} writes the user's keys, durations as Go strings, and omits defaults.
        """
        value = Options(klass="k", timeout=Duration(90), named=FrozenMap({"A": Child(host="h")}), tags=("t",))
        self.assertEqual(
            toRaw(value),
            {"timeout": "1m30s", "tags": ["t"], "class": "k", "named": {"A": {"host": "h"}}},
        )
        full = toRaw(Child(host="h"), omitDefaults=False)
        self.assertEqual(full, {"host": "h", "port": 80})

    def test_toRawRoundTrip(self) -> None:
        """
        Decoding what C{toRaw} wrote gives the same value back.
        """
        value = Options(name="n", timeout=Duration(0.25), child=Child(host="h", port=5), mode="slow")
        self.assertEqual(decode(Options, toRaw(value))[0], value)


class ConfigErrorTests(SynchronousTestCase):
    """
    Tests for L{relayd.config.errors}.
    """

    def test_str(self) -> None:
        """
        An error reads "source: path: message", leaving out the parts that are empty.
        """
        self.assertEqual(str(ConfigError("a.b", "bad")), "a.b: bad")
        self.assertEqual(str(ConfigError("", "bad")), "bad")
        self.assertEqual(str(ConfigError("a", "bad", "f.toml")), "f.toml: a: bad")
        self.assertEqual(str(ConfigError("", "bad", "f.toml")), "f.toml: bad")

    def test_repr(self) -> None:
        """
        The repr shows path, message and source.
        """
        self.assertEqual(repr(ConfigError("a", "m", "s")), "ConfigError('a', 'm', 's')")

    def test_withSourceAndPrefix(self) -> None:
        """
        C{withSource} and C{withPrefix} return changed copies.
        """
        error = ConfigError("[0].b", "m")
        self.assertEqual(error.withSource("f"), ConfigError("[0].b", "m", "f"))
        self.assertEqual(error.withPrefix("list"), ConfigError("list[0].b", "m"))
        self.assertEqual(ConfigError("b", "m").withPrefix("a"), ConfigError("a.b", "m"))
        self.assertEqual(error, ConfigError("[0].b", "m"))

    def test_equality(self) -> None:
        """
        Errors are equal and hash alike when path, message and source are.
        """
        self.assertEqual(ConfigError("a", "m", "s"), ConfigError("a", "m", "s"))
        self.assertNotEqual(ConfigError("a", "m", "s"), ConfigError("a", "m", "t"))
        self.assertEqual(hash(ConfigError("a", "m")), hash(ConfigError("a", "m")))
        self.assertNotEqual(ConfigError("a", "m"), "a: m")

    def test_configErrors(self) -> None:
        """
        ConfigErrors joins several errors, one a line, and takes the first's fields.
        """
        errors = ConfigErrors([ConfigError("a", "m"), ConfigError("b", "n")])
        self.assertEqual(str(errors), "a: m\nb: n")
        self.assertEqual((errors.path, errors.message), ("a", "m"))
        self.assertEqual(
            errors.withSource("s").errors, (ConfigError("a", "m", "s"), ConfigError("b", "n", "s"))
        )
        self.assertEqual(
            errors.withPrefix("x").errors, (ConfigError("x.a", "m"), ConfigError("x.b", "n"))
        )
        self.assertIn("ConfigErrors(", repr(errors))

    def test_flatten(self) -> None:
        """
        C{flatten} expands nested ConfigErrors into single errors.
        """
        a, b, c = ConfigError("a", "m"), ConfigError("b", "m"), ConfigError("c", "m")
        self.assertEqual(flatten([a, ConfigErrors([b, c])]), [a, b, c])

    def test_raiseAll(self) -> None:
        """
        C{raiseAll} raises nothing, the single error, or a ConfigErrors.
        """
        raiseAll([])
        single = ConfigError("a", "m")
        with self.assertRaises(ConfigError) as caught:
            raiseAll([single])
        self.assertIs(caught.exception, single)
        with self.assertRaises(ConfigErrors) as many:
            raiseAll([single, ConfigErrors([ConfigError("b", "m")])])
        self.assertEqual(len(many.exception.errors), 2)

    def test_joinPath(self) -> None:
        """
        C{joinPath} joins with dots, but not before an index or around empty parts.
        """
        self.assertEqual(joinPath("a", "b"), "a.b")
        self.assertEqual(joinPath("a", "[0]"), "a[0]")
        self.assertEqual(joinPath("", "b"), "b")
        self.assertEqual(joinPath("a", ""), "a")
