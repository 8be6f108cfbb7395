"""containerd's filter syntax, for listing blobs and ingests.

A filter is comma-separated selectors that must all match: ``fieldpath``,
``fieldpath==value``, ``fieldpath!=value`` or ``fieldpath~=regexp``. A fieldpath is
fields joined by dots; a field or value with other characters is quoted with ``"``,
``/`` or ``|`` (Go string escapes). Several filters match when any of them does. Examples:
``labels."containerd.io/uncompressed"``, ``digest==sha256:...``, ``labels.tag~=/^v1[.]/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from layerdiff.errors import InvalidArgumentError

#: Given a fieldpath, the object's value there, or ``None`` when it has none.
Adaptor = Callable[[Sequence[str]], str | None]

_QUOTES = '"/|'
_OPERATORS = ("==", "!=", "~=")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_DIGITS = {8: "01234567", 16: "0123456789abcdefABCDEF"}
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VALUE = re.compile(r"[^\s,]+")


@dataclass(frozen=True)
class _Selector:
    fieldpath: tuple[str, ...]
    operator: str  # "" tests presence
    value: str
    pattern: re.Pattern[str] | None

    def matches(self, adaptor: Adaptor) -> bool:
        found = adaptor(self.fieldpath)
        if self.operator == "":
            return found is not None
        if self.operator == "==":
            return found == self.value
        if self.operator == "!=":
            return found != self.value
        assert self.pattern is not None
        return found is not None and self.pattern.search(found) is not None


class Filter:
    """Any of several parsed filters; each is all of its selectors. Empty matches all."""

    def __init__(self, alternatives: Sequence[Sequence[_Selector]]) -> None:
        self._alternatives = [tuple(a) for a in alternatives]

    def matches(self, adaptor: Adaptor) -> bool:
        """Whether the object seen through ``adaptor`` passes the filter."""
        if not self._alternatives:
            return True
        return any(all(s.matches(adaptor) for s in sel) for sel in self._alternatives)


def parse_filters(filters: Sequence[str]) -> Filter:
    """Parse filters that match when any of them does; ``InvalidArgumentError`` if malformed."""
    return Filter([_Parser(text).selectors() for text in filters if text != ""])


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def selectors(self) -> list[_Selector]:
        out = [self._selector()]
        while self._pos < len(self._text):
            self._expect(",")
            out.append(self._selector())
        return out

    def _selector(self) -> _Selector:
        self._skip_spaces()
        path = [self._field()]
        while self._peek() == ".":
            self._pos += 1
            path.append(self._field())
        self._skip_spaces()
        operator = self._text[self._pos : self._pos + 2]
        if operator not in _OPERATORS:
            return _Selector(tuple(path), "", "", None)
        self._pos += 2
        self._skip_spaces()
        value = self._quoted() if self._at_quote() else self._match(_VALUE, "a value")
        self._skip_spaces()
        pattern = None
        if operator == "~=":
            try:
                pattern = re.compile(value)
            except re.error as err:
                raise self._error(f"bad regular expression {value!r}: {err}") from None
        return _Selector(tuple(path), operator, value, pattern)

    def _field(self) -> str:
        if self._at_quote():
            return self._quoted()
        return self._match(_FIELD, "a field name")

    def _quoted(self) -> str:
        quote = self._text[self._pos]
        self._pos += 1
        out: list[str] = []
        while self._pos < len(self._text):
            ch = self._text[self._pos]
            self._pos += 1
            if ch == quote:
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                continue
            out.append(self._escape(quote))
        raise self._error("unterminated quoted string")

    def _escape(self, quote: str) -> str:
        start = self._pos - 1  # the backslash
        ch = self._peek()
        self._pos += 1
        if ch in _ESCAPES:
            return _ESCAPES[ch]
        if ch in ("\\", quote):
            return ch
        digits = {"x": (16, 2), "u": (16, 4), "U": (16, 8)}.get(ch)
        if digits is None and ch in "01234567" and ch:
            self._pos -= 1
            digits = (8, 3)
        if digits is None:
            # repr: the character after the backslash may be a control character.
            raise self._error(f"bad escape sequence {self._text[start : self._pos]!r}")
        base, count = digits
        text = self._text[self._pos : self._pos + count]
        self._pos += count
        sequence = self._text[start : self._pos]
        # Only digits: int() would also take a sign, spaces and underscores (\x+1).
        if len(text) != count or not all(d in _DIGITS[base] for d in text):
            raise self._error(f"bad escape sequence {sequence!r}")
        try:
            return chr(int(text, base))
        except ValueError:  # past U+10FFFF
            raise self._error(f"bad escape sequence {sequence!r}") from None

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self._text, self._pos)
        if found is None:
            raise self._error(f"expected {what}")
        self._pos = found.end()
        return found.group()

    def _expect(self, char: str) -> None:
        self._skip_spaces()
        if self._peek() != char:
            raise self._error(f"expected {char!r}")
        self._pos += 1

    def _at_quote(self) -> bool:
        return self._peek() != "" and self._peek() in _QUOTES

    def _peek(self) -> str:
        return self._text[self._pos : self._pos + 1]

    def _skip_spaces(self) -> None:
        while self._peek().isspace():
            self._pos += 1

    def _error(self, message: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"invalid filter {self._text!r} at position {self._pos}: {message}"
        )
