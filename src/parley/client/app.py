"""The body of ``parley talk``, imported only when it runs (``parley serve`` never loads the SDK here)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openai import AsyncOpenAI
from openai.types.realtime import (
    RealtimeAudioConfigInputParam,
    RealtimeAudioConfigOutputParam,
    RealtimeAudioConfigParam,
    RealtimeAudioFormatsParam,
    RealtimeSessionCreateRequestParam,
)

from parley.client.audio import RATE, MicrophoneError, input_device, load_wav, save_wav
from parley.client.conversation import ConnectionLost, Conversation, SessionRejected
from parley.client.driver import Plan, run_turns
from parley.client.report import Printer, Turn, summary
from parley.client.talk import DEFAULT_KEY, DEFAULT_URL

FAILED = {"failed", "error", "timeout", "interrupted", "connection lost"}
"""Turn outcomes that make the exit code 1."""


def _fail(message: str, code: int) -> int:
    print(f"parley talk: error: {message}", file=sys.stderr)
    return code


def _ws_url(url: str) -> str:
    """Check the URL and drop a trailing ``/realtime`` (the SDK adds it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError(f"--url must look like {DEFAULT_URL}, not {url!r}")
    url = url.rstrip("/")
    return url[: -len("/realtime")] if url.endswith("/realtime") else url


def _plan(args: argparse.Namespace) -> Plan:
    """Validate the arguments; raises ValueError (bad arguments) or MicrophoneError."""
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    if args.text_only and args.out is not None:
        raise ValueError("--out saves reply audio, but --text-only asks for no audio")
    if args.out is not None and not args.out.parent.is_dir():
        raise ValueError(f"--out {args.out}: no such directory {args.out.parent}")
    url = _ws_url(args.url or os.environ.get("PARLEY_URL") or DEFAULT_URL)
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or DEFAULT_KEY
    inputs: list[tuple[str, str | bytes]] = []
    for kind, value in args.inputs:
        if kind == "wav":
            try:
                inputs.append((f"wav {Path(value).name}", load_wav(value)))
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read --wav {value}: {exc}") from exc
        elif value.strip():
            inputs.append(("text", value))
        else:
            raise ValueError("--text must not be empty")
    if args.mic:
        input_device()
    interactive = not inputs and not args.mic
    if interactive and not sys.stdin.isatty():
        inputs = [("text", line.strip()) for line in sys.stdin if line.strip()]
        interactive = False
        if not inputs:
            raise ValueError("nothing to say: give --text, --wav or --mic, or run at a terminal")
    has_audio = args.mic or any(kind != "text" for kind, _ in inputs)
    return Plan(
        url,
        api_key,
        inputs,
        interactive,
        vad=has_audio if args.vad is None else args.vad,
        mic=args.mic,
        transcribe=args.transcribe,
        fast=args.fast,
        timeout_s=args.timeout,
    )


def _session(args: argparse.Namespace, plan: Plan) -> RealtimeSessionCreateRequestParam:
    pcm: RealtimeAudioFormatsParam = {"type": "audio/pcm", "rate": 24000}
    audio_in: RealtimeAudioConfigInputParam = {
        "format": pcm,
        "turn_detection": {"type": "server_vad"} if plan.vad else None,
    }
    if args.transcribe:
        audio_in["transcription"] = {"model": "whisper-1"}
    audio: RealtimeAudioConfigParam = {"input": audio_in}
    if not args.text_only:
        audio_out: RealtimeAudioConfigOutputParam = {"format": pcm}
        if args.voice:
            audio_out["voice"] = args.voice
        audio["output"] = audio_out
    session: RealtimeSessionCreateRequestParam = {
        "type": "realtime",
        "output_modalities": ["text"] if args.text_only else ["audio"],
        "audio": audio,
    }
    if args.instructions is not None:
        session["instructions"] = args.instructions
    return session


def main(args: argparse.Namespace) -> int:
    """Run ``parley talk``; returns the process exit code."""
    try:
        plan = _plan(args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    except MicrophoneError as exc:
        return _fail(str(exc), 1)
    printer = Printer(sys.stdout, sys.stderr)
    try:
        return asyncio.run(_talk(args, plan, printer))
    except KeyboardInterrupt:
        printer.line("interrupted", err=True)
        return 1


async def _talk(args: argparse.Namespace, plan: Plan, printer: Printer) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

    client = AsyncOpenAI(api_key=plan.api_key, websocket_base_url=plan.url)
    where = f"{plan.url}/realtime"
    try:
        conn = await asyncio.wait_for(client.realtime.connect(model=args.model).enter(), plan.timeout_s)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            return _fail(
                f"{where} refused the API key (HTTP {status}); pass --api-key or set OPENAI_API_KEY", 1
            )
        return _fail(
            f"{where} answered HTTP {status}, not a WebSocket; is --url a Realtime base URL (…/v1)?", 1
        )
    except (InvalidURI, InvalidHandshake) as exc:
        return _fail(f"cannot open a WebSocket to {where}: {exc}", 1)
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or "timed out"
        return _fail(f"cannot connect to {where}: {reason}; is `parley serve` running at {plan.url}?", 1)
    convo = Conversation(conn, printer, show_events=args.events)
    convo.transcribe, convo.vad = args.transcribe, plan.vad
    receiver = asyncio.create_task(convo.receive())
    try:
        await convo.configure(_session(args, plan), plan.timeout_s)
        await _interruptible(run_turns(plan, convo), plan, convo)
    except SessionRejected as exc:
        return _fail(f"the server rejected the session settings: {exc}", 1)
    except (ConnectionLost, ConnectionClosed) as exc:
        printer.line(f"error: {convo.closed or exc}", err=True)
        if not convo.abandon("connection lost"):
            convo.turns.append(Turn("(connection)", status="connection lost", done=True))
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        with contextlib.suppress(Exception):
            await conn.close()
    return _report(args, convo, printer)


async def _interruptible(work: Coroutine[Any, Any, None], plan: Plan, convo: Conversation) -> None:
    """Run ``work``; Ctrl-C stops the microphone when it is listening, else abandons the turns."""
    task = asyncio.create_task(work)

    def interrupt() -> None:
        if plan.mic_stop is not None and not plan.mic_stop.is_set():
            plan.mic_stop.set()
        else:
            task.cancel()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # elsewhere Ctrl-C just ends it
        loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        await asyncio.wait({task})
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    if task.cancelled():
        convo.printer.line("interrupted", err=True)
        if not convo.abandon("interrupted") and plan.inputs_sent < len(plan.inputs):
            convo.turns.append(Turn("(interrupted)", status="interrupted", done=True))
        return
    task.result()


def _report(args: argparse.Namespace, convo: Conversation, printer: Printer) -> int:
    printer.end()
    turns = convo.turns
    saved = args.out is None or _save(args.out, b"".join(bytes(turn.audio) for turn in turns), printer)
    if turns:
        printer.line("\n".join(["", *summary(turns)]), err=True)
    return 1 if any(turn.status in FAILED for turn in turns) or not saved else 0


def _save(path: Path, audio: bytes, printer: Printer) -> bool:
    try:
        save_wav(path, audio)
    except OSError as exc:
        printer.line(f"error: cannot write {path}: {exc}", err=True)
        return False
    if audio:
        printer.line(f"saved {len(audio) / 2 / RATE:.2f} s of reply audio to {path}", err=True)
    else:
        printer.line(f"warning: no reply audio arrived; {path} is empty", err=True)
    return True
