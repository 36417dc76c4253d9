"""
Tests for L{relayd.config.types}: L{FrozenMap}, Go-style durations and
Go's boolean syntax.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.types import (
    Duration,
    FrozenMap,
    formatDuration,
    parseBool,
    parseDuration,
)

# Up to about eleven days either way: far past any configured timeout, and
# small enough that float seconds still hold every nanosecond exactly.
NANOS = st.integers(min_value=-(10**15), max_value=10**15)
SMALL_MAPS = st.dictionaries(st.text(max_size=5), st.integers(), max_size=6)


class FrozenMapTests(SynchronousTestCase):
    """
    Tests for L{FrozenMap}.
    """

    def test_mapping(self) -> None:
        """
        A FrozenMap reads like the dict it was made from, in insertion order.
        """
        m = FrozenMap({"b": 1, "a": 2})
        self.assertEqual(list(m), ["b", "a"])
        self.assertEqual(m["a"], 2)
        self.assertEqual(len(m), 2)
        self.assertIn("b", m)
        self.assertEqual(m.get("c", 3), 3)
        self.assertEqual(dict(m.items()), {"b": 1, "a": 2})

    def test_fromPairs(self) -> None:
        """
        A FrozenMap can be built from key-value pairs, and empty by default.
        """
        self.assertEqual(FrozenMap([("a", 1)]), {"a": 1})
        self.assertEqual(len(FrozenMap()), 0)

    def test_immutable(self) -> None:
        """
        A FrozenMap supports neither item assignment nor new attributes.
        """
        m = FrozenMap({"a": 1})
        with self.assertRaises(TypeError):
            m["a"] = 2  # type: ignore[index]
        with self.assertRaises(AttributeError):
            m.other = 1  # type: ignore[attr-defined]

    def test_copyIsIndependent(self) -> None:
        """
        Changing the dict a FrozenMap was built from does not change the map.
        """
        source = {"a": 1}
        m = FrozenMap(source)
        source["a"] = 2
        self.assertEqual(m["a"], 1)

    def test_set(self) -> None:
        """
        C{set} returns a changed copy and leaves the original alone.
        """
        m = FrozenMap({"a": 1})
        n = m.set("b", 2).set("a", 3)
        self.assertEqual(m, {"a": 1})
        self.assertEqual(n, {"a": 3, "b": 2})
        self.assertIsInstance(n, FrozenMap)

    def test_notEqualToOtherTypes(self) -> None:
        """
        A FrozenMap is never equal to something that is not a mapping.
        """
        self.assertNotEqual(FrozenMap(), [])
        self.assertNotEqual(FrozenMap({"a": 1}), "a")
        self.assertFalse(FrozenMap() == 0)

    def test_repr(self) -> None:
        """
        The repr shows the contents.
        """
        self.assertEqual(repr(FrozenMap({"a": 1})), "FrozenMap({'a': 1})")

    @given(SMALL_MAPS)
    def test_equalityIgnoresOrder(self, data: dict[str, int]) -> None:
        """
        Two FrozenMaps with the same items in any order are equal and hash alike.
        """
        forward = FrozenMap(data)
        backward = FrozenMap(dict(reversed(list(data.items()))))
        self.assertEqual(forward, backward)
        self.assertEqual(hash(forward), hash(backward))

    @given(SMALL_MAPS, SMALL_MAPS)
    def test_equalityIsDictEquality(self, a: dict[str, int], b: dict[str, int]) -> None:
        """
        FrozenMaps are equal exactly when their dicts are, and equal maps hash alike.
        """
        self.assertEqual(FrozenMap(a) == FrozenMap(b), a == b)
        self.assertEqual(FrozenMap(a) != FrozenMap(b), a != b)
        if a == b:
            self.assertEqual(hash(FrozenMap(a)), hash(FrozenMap(b)))

    @given(SMALL_MAPS)
    def test_equalToDict(self, data: dict[str, int]) -> None:
        """
        A FrozenMap equals a plain dict with the same items, from either side.
        """
        self.assertTrue(FrozenMap(data) == data)
        self.assertTrue(data == FrozenMap(data))

    @given(SMALL_MAPS)
    def test_hashStable(self, data: dict[str, int]) -> None:
        """
        A FrozenMap's hash does not change and it works as a set member.
        """
        m = FrozenMap(data)
        self.assertEqual(hash(m), hash(m))
        self.assertEqual(len({m, FrozenMap(data)}), 1)

    @given(SMALL_MAPS, st.text(max_size=5), st.integers())
    def test_setLaw(self, data: dict[str, int], key: str, value: int) -> None:
        """
        C{m.set(k, v)} equals the dict with C{k} set to C{v}.
        """
        expected = dict(data)
        expected[key] = value
        self.assertEqual(FrozenMap(data).set(key, value), expected)


# (text, seconds)
VALID_DURATIONS = [
    ("10s", 10.0),
    ("1m30s", 90.0),
    ("250ms", 0.25),
    ("1.5h", 5400.0),
    ("-1s", -1.0),
    ("+2s", 2.0),
    ("1h2m3s", 3723.0),
    ("2h45m", 9900.0),
    ("300us", 0.0003),
    ("300\u00b5s", 0.0003),
    ("300\u03bcs", 0.0003),
    ("1500ns", 1.5e-6),
    (".5s", 0.5),
    ("5.s", 5.0),
    ("0", 0.0),
    ("0s", 0.0),
    ("10", 10.0),
    ("1.5", 1.5),
    ("-3", -3.0),
    (" 10s ", 10.0),
]

# (value, message)
INVALID_DURATIONS = [
    ("", 'invalid duration \'\' (use Go syntax such as "1m30s" or a number of seconds)'),
    ("-", "invalid duration '-' (use Go syntax"),
    ("x", "invalid duration 'x' (use Go syntax"),
    ("s", "invalid duration 's' (use Go syntax"),
    ("1m 30s", "invalid duration '1m 30s'"),
    ("1S", "invalid duration '1S'"),
    ("1.2.3s", "invalid duration '1.2.3s'"),
    ("+-1s", "invalid duration '+-1s'"),
    ("1_000s", "invalid duration '1_000s'"),
    ("1d", "unknown unit 'd' in duration '1d' (valid units: ns, us, ms, s, m, h)"),
    ("10sec", "unknown unit 'sec' in duration '10sec'"),
    ("1e3", "unknown unit 'e' in duration '1e3'"),
    ("9" * 400, "is too long"),
    (True, 'expected a duration such as "10s", got true'),
    (None, 'expected a duration such as "10s", got None'),
    ([1], 'expected a duration such as "10s", got [1]'),
    (math.inf, 'expected a duration such as "10s", got inf'),
    (math.nan, 'expected a duration such as "10s", got nan'),
    (10**400, 'expected a duration such as "10s", got 1000'),
]


class ParseDurationTests(SynchronousTestCase):
    """
    Tests for L{parseDuration}.
    """

    def test_valid(self) -> None:
        """
        Go duration strings and bare numbers (seconds) parse to seconds.
        """
        for text, seconds in VALID_DURATIONS:
            with self.subTest(text=text):
                value = parseDuration(text)
                self.assertIsInstance(value, Duration)
                self.assertAlmostEqual(value, seconds, places=12)

    def test_numbers(self) -> None:
        """
        Native integers and floats are seconds.
        """
        self.assertEqual(parseDuration(5), Duration(5))
        self.assertEqual(parseDuration(0.25), 0.25)
        self.assertIsInstance(parseDuration(5), Duration)

    def test_invalid(self) -> None:
        """
        Anything else fails with a message naming the value and the syntax expected.
        """
        for value, message in INVALID_DURATIONS:
            with self.subTest(value=value):
                with self.assertRaises(ValueError) as caught:
                    parseDuration(value)
                self.assertIn(message, str(caught.exception))

    @given(
        st.integers(0, 1000), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999)
    )
    def test_composed(self, hours: int, minutes: int, seconds: int, millis: int) -> None:
        """
        A string of several units is the sum of its parts.
        """
        text = f"{hours}h{minutes}m{seconds}s{millis}ms"
        expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
        self.assertAlmostEqual(parseDuration(text), expected, places=6)
        self.assertAlmostEqual(parseDuration("-" + text), -expected, places=6)


# (seconds, text as Go prints it)
FORMATTED = [
    (0, "0s"),
    (1e-9, "1ns"),
    (999e-9, "999ns"),
    (1.5e-6, "1.5\u00b5s"),
    (0.25, "250ms"),
    (1.5, "1.5s"),
    (10, "10s"),
    (90, "1m30s"),
    (3600, "1h0m0s"),
    (3723, "1h2m3s"),
    (5400, "1h30m0s"),
    (-90, "-1m30s"),
    (-0.25, "-250ms"),
    (7 * 24 * 3600, "168h0m0s"),
]


class FormatDurationTests(SynchronousTestCase):
    """
    Tests for L{formatDuration} and L{Duration}'s text forms.
    """

    def test_goFormat(self) -> None:
        """
        Durations print the way Go prints a time.Duration.
        """
        for seconds, text in FORMATTED:
            with self.subTest(seconds=seconds):
                self.assertEqual(formatDuration(seconds), text)

    def test_durationStrRepr(self) -> None:
        """
        A Duration's str is its Go form and its repr names the type.
        """
        self.assertEqual(str(Duration(90)), "1m30s")
        self.assertEqual(repr(Duration(90)), "Duration('1m30s')")

    def test_durationIsFloat(self) -> None:
        """
        A Duration compares and computes like its number of seconds.
        """
        self.assertEqual(Duration(1.5), 1.5)
        self.assertEqual(Duration(2) * 2, 4)

    @given(NANOS)
    def test_roundTripNanoseconds(self, nanos: int) -> None:
        """
        Formatting then parsing a duration gives back the same nanoseconds.
        """
        seconds = nanos / 1e9
        self.assertEqual(round(parseDuration(formatDuration(seconds)) * 1e9), nanos)

    @given(NANOS)
    def test_roundTripText(self, nanos: int) -> None:
        """
        The printed form of a parsed printed duration is the same text.
        """
        text = formatDuration(nanos / 1e9)
        self.assertEqual(formatDuration(parseDuration(text)), text)

    @given(st.integers(-(10**6), 10**6))
    def test_roundTripBareSeconds(self, seconds: int) -> None:
        """
        A bare number of seconds parses to that many seconds and prints in Go form.
        """
        self.assertEqual(parseDuration(str(seconds)), seconds)
        self.assertEqual(parseDuration(formatDuration(seconds)), seconds)


class ParseBoolTests(SynchronousTestCase):
    """
    Tests for L{parseBool}, which follows Go's C{strconv.ParseBool}.
    """

    def test_true(self) -> None:
        """
        The spellings Go accepts for true, and True itself, are true.
        """
        for value in ("1", "t", "T", "TRUE", "true", "True", True):
            with self.subTest(value=value):
                self.assertIs(parseBool(value), True)

    def test_false(self) -> None:
        """
        The spellings Go accepts for false, and False itself, are false.
        """
        for value in ("0", "f", "F", "FALSE", "false", "False", False):
            with self.subTest(value=value):
                self.assertIs(parseBool(value), False)

    def test_invalid(self) -> None:
        """
        Anything else fails with a message quoting the value.
        """
        for value in ("yes", "on", "tRUE", " true", "", 1, 0, None, 1.0):
            with self.subTest(value=value):
                with self.assertRaises(ValueError) as caught:
                    parseBool(value)
                self.assertEqual(str(caught.exception), f"expected true or false, got {value!r}")
