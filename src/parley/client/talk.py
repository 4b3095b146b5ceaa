"""``parley talk``: a terminal client for Parley or any OpenAI Realtime server.

Built on the official ``openai`` SDK's realtime client (GA interface). It connects, sends
``session.update`` with the chosen options, then one turn per ``--text``/``--wav`` (in the order
given), the microphone (``--mic``), or lines typed at the terminal; prints the live transcript and,
at the end, a summary per turn. Exit codes: 0 success, 1 a failed turn or connection problem,
2 bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_URL = "ws://127.0.0.1:8000/v1"
DEFAULT_KEY = "sk-parley-dev"


class _InputAction(argparse.Action):
    """Collects ``--text``/``--wav`` into one ordered list of ``(kind, value)``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        inputs: list[tuple[str, str]] = list(getattr(namespace, "inputs", None) or [])
        inputs.append((self.const, str(values)))
        namespace.inputs = inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``parley talk`` options to ``parser``."""
    parser.description = (
        "Talk to a Realtime server (Parley or any other) from the terminal. Each --text/--wav is one "
        "turn, in order; with none of --text/--wav/--mic, type lines at the prompt (/quit to leave)."
    )
    parser.set_defaults(inputs=[])
    add = parser.add_argument
    add("--url", default=None, help=f"WebSocket base URL [env PARLEY_URL; default {DEFAULT_URL}]")
    add("--api-key", default=None, help=f"API key [env OPENAI_API_KEY; default {DEFAULT_KEY}]")
    add("--model", default="gpt-realtime", help="model to ask for [default: gpt-realtime]")
    add("--text", action=_InputAction, const="text", metavar="TEXT", help="send a text turn (repeatable)")
    add(
        "--wav",
        action=_InputAction,
        const="wav",
        metavar="FILE",
        help="send a WAV file's speech (repeatable)",
    )
    add("--mic", action="store_true", help="talk through the microphone (Ctrl-C to stop)")
    add("--fast", action="store_true", help="send --wav audio as fast as possible, not at real time")
    add("--out", metavar="FILE", type=Path, help="save the reply audio as a 24 kHz WAV file")
    add("--text-only", action="store_true", help='ask for text replies only (output_modalities ["text"])')
    add("--voice", help="output voice (e.g. marin, alloy)")
    add("--instructions", help="session instructions (system prompt)")
    add(
        "--vad",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="server VAD ends audio turns (default: on with --wav/--mic, off for text); "
        "--no-vad commits audio by hand",
    )
    add("--transcribe", action="store_true", help="ask for input audio transcription (whisper-1)")
    add("--events", action="store_true", help="print every server event type as it arrives (stderr)")
    add("--timeout", type=float, default=60.0, help="seconds to wait for each reply [default: 60]")


def run(args: argparse.Namespace) -> int:
    """Run ``parley talk``; returns the process exit code."""
    from parley.client.app import main  # imports the openai SDK, numpy, ...: only when talking

    return main(args)
