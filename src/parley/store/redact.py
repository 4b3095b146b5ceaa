"""Redaction of personal data from text before it is stored (``PARLEY_REDACT``).

Replaced, in this order: e-mail addresses → ``[email]``; payment card numbers (13 to 19 digits, alone
or in groups split by spaces or dashes, that pass the Luhn check) → ``[card]``; phone numbers
(7 to 15 digits, optionally ``+country``, ``(area)``, split by spaces, dots or dashes; ISO dates and
plain decimals are left alone) → ``[phone]``; then each operator pattern
(``PARLEY_REDACT_PATTERNS``, Python regular expressions) → ``[redacted]``.

All patterns are linear (no nested optional repetition), so long inputs cannot stall the writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_DIGIT_RUN = re.compile(r"(?<!\w)\d+(?:[ -]\d+)*")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d+(?:[ .-]\d+)*")
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_DECIMAL = re.compile(r"\d+\.\d+")
_CARD_DIGITS = range(13, 20)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (card numbers pass it)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _followed_by_word(match: re.Match[str]) -> bool:
    end = match.end()
    return end < len(match.string) and (match.string[end].isalnum() or match.string[end] == "_")


def _card_end(groups: list[str], start: int) -> int | None:
    """The end of the longest card made of ``groups[start:end]``, if any (at most 19 digits).

    The Luhn sums are kept incrementally as groups are added on the right: ``doubled_even`` doubles
    the digits at even positions from the left, ``doubled_odd`` those at odd ones; a number of
    ``n`` digits doubles every second digit from the right, i.e. those whose position has the
    parity of ``n``."""
    n = doubled_even = doubled_odd = 0
    best = None
    for end in range(start + 1, len(groups) + 1):
        for char in groups[end - 1]:
            value = int(char)
            twice = value * 2 - 9 if value > 4 else value * 2
            doubled_even += twice if n % 2 == 0 else value
            doubled_odd += value if n % 2 == 0 else twice
            n += 1
        if n > _CARD_DIGITS[-1]:
            break
        if n in _CARD_DIGITS and (doubled_even if n % 2 == 0 else doubled_odd) % 10 == 0:
            best = end
    return best


def _cards(match: re.Match[str]) -> str:
    """A run of digit groups (split by single spaces or dashes) with every card in it replaced."""
    run = match.group(0)
    if _followed_by_word(match):
        return run
    parts = re.split(r"([ -])", run)  # groups at even indexes, separators between
    groups = parts[0::2]
    if sum(map(len, groups)) < _CARD_DIGITS[0]:
        return run
    out: list[str] = []
    i = 0
    while i < len(groups):
        end = _card_end(groups, i)
        if end is None:
            out.append(groups[i])
            end = i + 1
        else:
            out.append("[card]")
        if end < len(groups):
            out.append(parts[2 * end - 1])
        i = end
    return "".join(out)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _followed_by_word(match):
        return text
    digits = sum(c.isdigit() for c in text)
    international = text.startswith("+") or "(" in text
    if not 7 <= digits <= 15:
        return text
    if not international and (_DATE.fullmatch(text) or _DECIMAL.fullmatch(text)):
        return text
    return "[phone]"


class Redactor:
    """Replaces personal data in text; ``patterns`` are extra regular expressions (→ ``[redacted]``)."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: list[re.Pattern[str]] = []
        for pattern in patterns:
            try:
                self.patterns.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"invalid redaction pattern {pattern!r}: {exc}") from exc

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        text = EMAIL.sub("[email]", text)
        text = _DIGIT_RUN.sub(_cards, text)
        text = _PHONE.sub(_phone, text)
        for pattern in self.patterns:
            text = pattern.sub("[redacted]", text)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)
