"""What ``parley talk`` shows: the live transcript, and per-turn records for the final summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

from parley.client.audio import BYTES_PER_SECOND


@dataclass
class Turn:
    """One response and the input it answers."""

    label: str
    input_done_at: float | None = None
    response_id: str | None = None
    status: str = "no response"
    error: str | None = None
    first_delta_at: float | None = None
    audio: bytearray = field(default_factory=bytearray)
    event_ids: set[str] = field(default_factory=set)
    done: bool = False

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / BYTES_PER_SECOND

    @property
    def latency(self) -> float | None:
        """Seconds from the end of the input to the first delta of the response."""
        if self.input_done_at is None or self.first_delta_at is None:
            return None
        return max(0.0, self.first_delta_at - self.input_done_at)


class Printer:
    """Writes the live transcript; a streamed line stays open until something else is printed."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self._open: str | None = None

    def stream(self, key: str, prefix: str, text: str) -> None:
        if self._open != key:
            self.end()
            self.out.write(prefix)
            self._open = key
        self.out.write(text)
        self.out.flush()

    def end(self, key: str | None = None) -> None:
        if self._open is not None and (key is None or key == self._open):
            self.out.write("\n")
            self.out.flush()
            self._open = None

    def prompted(self, typed: bool) -> None:
        """A prompt was written (by ``input``); ``typed`` once the user ended its line with Enter."""
        self._open = None if typed else "prompt"

    def line(self, text: str, *, err: bool = False) -> None:
        self.end()
        stream = self.err if err else self.out
        stream.write(text + "\n")
        stream.flush()


def describe_error(error: Any) -> str:
    """``[code] message`` of an error object (any of the SDK's error models, or None)."""
    if error is None:
        return "unknown error"
    code = getattr(error, "code", None) or getattr(error, "type", None)
    message = getattr(error, "message", None) or "no message"
    return f"[{code}] {message}" if code else str(message)


def shorten(text: str, width: int = 24) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(turns: list[Turn]) -> list[str]:
    """The end-of-session table: one line per turn."""
    lines = [f"{'#':>2}  {'input':<34} {'status':<22} {'audio':>7}  {'first delta':>11}"]
    for number, turn in enumerate(turns, 1):
        latency = "-" if turn.latency is None else f"{turn.latency:.2f} s"
        lines.append(
            f"{number:>2}  {turn.label:<34} {turn.status:<22} {turn.audio_seconds:>5.2f} s  {latency:>11}"
        )
    return lines
