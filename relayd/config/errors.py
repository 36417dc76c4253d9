"""
Configuration errors: every problem names the dotted key path it is about.
"""

from __future__ import annotations

from typing import Iterable, Sequence


class ConfigError(Exception):
    """
    One problem in a configuration, at a key path such as
    ``http.routers.api.service``.
    """

    def __init__(self, path: str, message: str, source: str = "") -> None:
        self.path = path
        self.message = message
        self.source = source
        super().__init__(self.__str__())

    def withSource(self, source: str) -> ConfigError:
        """
        The same error, attributed to a source (a file name, a provider).
        """
        return type(self)(self.path, self.message, source)

    def withPrefix(self, prefix: str) -> ConfigError:
        """
        The same error, one level deeper in a larger document.
        """
        return type(self)(joinPath(prefix, self.path), self.message, self.source)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.source:
            return f"{self.source}: {text}"
        return text

    def __repr__(self) -> str:
        return f"ConfigError({self.path!r}, {self.message!r}, {self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigError):
            return NotImplemented
        return (self.path, self.message, self.source) == (
            other.path,
            other.message,
            other.source,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message, self.source))


class ConfigErrors(ConfigError):
    """
    Several problems found in one pass; ``errors`` lists them in document order.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        Exception.__init__(self, str(self))
        self.path = first.path
        self.message = first.message
        self.source = first.source

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def __repr__(self) -> str:
        return f"ConfigErrors({list(self.errors)!r})"

    def withSource(self, source: str) -> ConfigErrors:
        return ConfigErrors([e.withSource(source) for e in self.errors])

    def withPrefix(self, prefix: str) -> ConfigErrors:
        return ConfigErrors([e.withPrefix(prefix) for e in self.errors])


def flatten(errors: Iterable[ConfigError]) -> list[ConfigError]:
    """
    Expand any L{ConfigErrors} into its single errors.
    """
    result: list[ConfigError] = []
    for error in errors:
        if isinstance(error, ConfigErrors):
            result.extend(error.errors)
        else:
            result.append(error)
    return result


def raiseAll(errors: Sequence[ConfigError]) -> None:
    """
    Raise the errors as one exception if there are any.
    """
    errors = flatten(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def joinPath(prefix: str, key: str) -> str:
    """
    Join key path parts: ``a`` + ``b`` is ``a.b``, ``a`` + ``[0]`` is ``a[0]``.
    """
    if not prefix:
        return key
    if not key:
        return prefix
    if key.startswith("["):
        return prefix + key
    return f"{prefix}.{key}"
