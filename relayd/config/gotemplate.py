"""
The small part of Go's text/template language that Traefik users write in a
provider's C{defaultRule}: literal text, field references (C{.Name},
C{.Labels.key}), calls of a few functions (C{normalize}, C{index}, C{lower},
C{upper}, C{trim}, C{replace}, C{printf} with C{%s}), string literals and
pipelines (C{.Name | normalize}), with C{{{-}} / C{-}}} trimming. Anything else
(C{if}, C{range}, variables...) is refused with a clear error when the template
is compiled, so a provider fails at start rather than per container.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable, Mapping

import attrs

__all__ = ["TemplateError", "Template", "compileTemplate", "normalize"]


class TemplateError(ValueError):
    """
    A template that relayd cannot compile or run.
    """


def normalize(name: str) -> str:
    """
    Traefik's C{normalize}: every run of characters that are neither letters
    nor digits (in the Unicode sense) becomes one C{-}, and leading and
    trailing runs are dropped (C{"/my_app.web"} is C{"my-app-web"}).
    """
    words: list[str] = []
    current: list[str] = []
    for c in name:
        if unicodedata.category(c)[0] in "LN":
            current.append(c)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return "-".join(words)


def _index(container: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(container, Mapping):
            container = container.get(key, "")
        elif isinstance(container, (list, tuple)) and isinstance(key, int):
            try:
                container = container[key]
            except IndexError:
                raise TemplateError(f"index out of range: {key}") from None
        else:
            raise TemplateError(f"cannot index {type(container).__name__} with {key!r}")
    return container


def _printf(fmt: str, *args: Any) -> str:
    parts = re.split(r"(%[sv%])", fmt)
    out: list[str] = []
    remaining = list(args)
    for part in parts:
        if part == "%%":
            out.append("%")
        elif part in ("%s", "%v"):
            out.append(_text(remaining.pop(0)) if remaining else "%!s(MISSING)")
        else:
            out.append(part)
    return "".join(out)


def _str(fn: Callable[..., str]) -> Callable[..., str]:
    def call(*args: Any) -> str:
        return fn(*(_text(a) if not isinstance(a, int) else a for a in args))

    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "normalize": _str(normalize),
    "index": _index,
    "lower": _str(str.lower),
    "upper": _str(str.upper),
    "trim": _str(str.strip),
    "trimPrefix": _str(lambda prefix, s: s[len(prefix):] if s.startswith(prefix) else s),
    "trimSuffix": _str(lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s),
    # sprig's argument order: replace OLD NEW STRING, so the string can be piped.
    "replace": _str(lambda old, new, s: s.replace(old, new)),
    "printf": _printf,
}

_UNSUPPORTED = frozenset(
    "if else end range with define template block break continue and or not eq ne lt le gt ge "
    "len slice html js urlquery print println call".split()
)

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>-?[0-9]+)(?![\w.])
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<pipe>\|)
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


@attrs.frozen
class _Arg:
    kind: str  # "const", "field"
    value: Any


@attrs.frozen
class _Command:
    function: str | None
    args: tuple[_Arg, ...]


def _unquote(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        c = match.group(1)
        if c not in _ESCAPES:
            raise TemplateError(f"unsupported escape \\{c} in string {text}")
        return _ESCAPES[c]

    return re.sub(r"\\(.)", escape, text[1:-1])


def _parseAction(source: str) -> tuple[_Command, ...]:
    commands: list[_Command] = []
    words: list[_Arg | str] = []
    pos = 0
    source = source.strip()

    def finish() -> None:
        if not words:
            raise TemplateError(f"missing command in {{{{ {source} }}}}")
        head = words[0]
        if isinstance(head, str):
            if head not in FUNCTIONS:
                if head in _UNSUPPORTED:
                    raise TemplateError(
                        f'"{head}" is not supported in relayd templates '
                        f"(supported: fields such as .Name, and the functions "
                        f"{', '.join(sorted(FUNCTIONS))})"
                    )
                raise TemplateError(f'function "{head}" not defined')
            args = words[1:]
            if any(isinstance(a, str) for a in args):
                raise TemplateError(f"nested function calls need parentheses, which relayd does not support: {{{{ {source} }}}}")
            commands.append(_Command(head, tuple(a for a in args if isinstance(a, _Arg))))
        else:
            if len(words) > 1:
                raise TemplateError(f"can't give arguments to a non-function {{{{ {source} }}}}")
            commands.append(_Command(None, (head,)))
        words.clear()

    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            break
        pos = match.end()
        if match.group("string"):
            words.append(_Arg("const", _unquote(match.group("string"))))
        elif match.group("raw"):
            words.append(_Arg("const", match.group("raw")[1:-1]))
        elif match.group("number"):
            words.append(_Arg("const", int(match.group("number"))))
        elif match.group("field"):
            text = match.group("field")
            path = tuple(p for p in text.split(".") if p)
            words.append(_Arg("field", path))
        elif match.group("name"):
            words.append(match.group("name"))
        elif match.group("pipe"):
            finish()
        else:
            c = match.group("other")
            what = {"$": "variables", "(": "parentheses", ":": "assignments"}.get(c, f"{c!r}")
            raise TemplateError(f"{what} are not supported in relayd templates: {{{{ {source} }}}}")
    finish()
    return tuple(commands)


@attrs.frozen
class Template:
    """
    A compiled template; L{render} fills it with data.
    """

    source: str
    parts: tuple[str | tuple[_Command, ...], ...]

    def render(self, data: Mapping[str, Any]) -> str:
        """
        @raise TemplateError: for a field the data does not have.
        """
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = None
            for number, command in enumerate(part):
                args = [self._evaluate(a, data) for a in command.args]
                if number > 0:
                    args.append(value)
                if command.function is None:
                    value = args[0]
                else:
                    try:
                        value = FUNCTIONS[command.function](*args)
                    except TypeError:
                        raise TemplateError(
                            f'wrong number of arguments for "{command.function}"'
                        ) from None
            out.append(_text(value))
        return "".join(out)

    @staticmethod
    def _evaluate(arg: _Arg, data: Mapping[str, Any]) -> Any:
        if arg.kind == "const":
            return arg.value
        value: Any = data
        for depth, name in enumerate(arg.value):
            if not isinstance(value, Mapping):
                raise TemplateError(f"can't evaluate field {name} in {type(value).__name__}")
            if name in value:
                value = value[name]
            elif depth == 0:
                raise TemplateError(
                    f"can't evaluate field {name} (available: {', '.join(sorted(value))})"
                )
            else:
                # A map such as .Labels: a missing key is the empty string.
                value = ""
        return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def compileTemplate(source: str) -> Template:
    """
    Compile a template.

    @raise TemplateError: if it uses syntax relayd does not support.
    """
    parts: list[str | tuple[_Command, ...]] = []
    pos = 0
    pending = ""
    while True:
        start = source.find("{{", pos)
        if start < 0:
            pending += source[pos:]
            break
        text = source[pos:start]
        trimLeft = source.startswith("{{- ", start) or source.startswith("{{-\t", start)
        if trimLeft:
            text = text.rstrip()
        pending += text
        end = source.find("}}", start)
        if end < 0:
            raise TemplateError(f"unclosed action in template {source!r}")
        inner = source[start + 2 : end]
        if trimLeft:
            inner = inner[1:]
        trimRight = inner.endswith(" -") or inner.endswith("\t-")
        if trimRight:
            inner = inner[:-1]
        if inner.strip().startswith("/*"):
            commands: tuple[_Command, ...] | None = None
        else:
            commands = _parseAction(inner)
        if pending:
            parts.append(pending)
            pending = ""
        if commands is not None:
            parts.append(commands)
        pos = end + 2
        if trimRight:
            while pos < len(source) and source[pos].isspace():
                pos += 1
    if pending:
        parts.append(pending)
    return Template(source=source, parts=tuple(parts))


def render(source: str, data: Mapping[str, Any]) -> str:
    """
    Compile and render a template in one step.
    """
    return compileTemplate(source).render(data)
