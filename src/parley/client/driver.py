"""The input side of ``parley talk``: the planned turns, typed lines, and the microphone."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from parley.client.audio import RATE, Microphone, paced, silence, split
from parley.client.conversation import Conversation

VAD_TAIL_SECONDS = 1.0
"""Silence sent after a WAV file with server VAD on, so the VAD hears the speech end."""


@dataclass
class Plan:
    """What to send, decided from the arguments."""

    url: str
    api_key: str
    inputs: list[tuple[str, str | bytes]]
    """``("text", text)`` or ``("wav <name>", pcm)`` pairs, in order."""
    interactive: bool
    vad: bool
    mic: bool = False
    transcribe: bool = False
    fast: bool = False
    timeout_s: float = 60.0
    inputs_sent: int = 0
    """How many of ``inputs`` have been sent and answered."""
    mic_stop: asyncio.Event | None = field(default=None, repr=False)
    """Set while the microphone streams under server VAD; Ctrl-C sets it to stop listening."""


async def run_turns(plan: Plan, convo: Conversation) -> None:
    """Send every planned input in order, then read lines or listen, as the plan says."""
    for kind, value in plan.inputs:
        if isinstance(value, str):
            if not plan.interactive:
                convo.printer.line(f"you: {value}")
            await convo.send_text(value, plan.timeout_s)
        else:
            audio = value + (silence(VAD_TAIL_SECONDS) if plan.vad else b"")
            if not plan.transcribe:
                convo.printer.line(f"you: [{len(value) / 2 / RATE:.1f} s of audio from {kind[4:]}]")
            await convo.send_audio(kind, paced(split(audio), real_time=not plan.fast), plan.timeout_s)
        plan.inputs_sent += 1
    if plan.interactive:
        await _interactive(plan, convo)
    if plan.mic:
        async with Microphone() as mic:
            if plan.vad:
                await _mic_vad(plan, convo, mic)
            else:
                await _mic_push_to_talk(plan, convo, mic)


async def read_line(prompt: str) -> str | None:
    """One line from stdin, or None at EOF. A daemon thread reads, so Ctrl-C never waits for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def deliver(line: str | None) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except (EOFError, OSError, ValueError):
            line = None
        with contextlib.suppress(RuntimeError):  # the loop may be gone by now
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="parley-talk-stdin", daemon=True).start()
    return await future


async def _ask(convo: Conversation, prompt: str) -> str | None:
    """Prompt for one line at the terminal; None at EOF."""
    convo.printer.prompted(False)
    line = await read_line(prompt)
    if line is not None:
        convo.printer.prompted(True)
    return line


async def _interactive(plan: Plan, convo: Conversation) -> None:
    convo.printer.line("Type a message and press Enter; /quit or Ctrl-D to leave.", err=True)
    while (line := await _ask(convo, "you: ")) is not None:
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if text:
            await convo.send_text(text, plan.timeout_s)


def _b64(chunk: bytes) -> str:
    return base64.b64encode(chunk).decode("ascii")


async def _mic_vad(plan: Plan, convo: Conversation, mic: Microphone) -> None:
    """Stream the microphone until Ctrl-C; server VAD decides when each turn ends."""
    stop = plan.mic_stop = asyncio.Event()
    convo.vad_label(f"mic {mic.name}"[:34])
    convo.printer.line(f"Listening on {mic.name}: speak, and press Ctrl-C to stop.", err=True)

    async def forward() -> None:
        async for chunk in mic.chunks():
            await convo.conn.input_audio_buffer.append(audio=_b64(chunk))

    sender = asyncio.create_task(forward())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        plan.mic_stop = None
        stopper.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender  # re-raises a send failure (a lost connection)
    await convo.settle(plan.timeout_s)


async def _mic_push_to_talk(plan: Plan, convo: Conversation, mic: Microphone) -> None:
    """Enter starts talking and Enter again sends (audio streams meanwhile); Ctrl-D or /quit leaves."""
    label = f"mic {mic.name}"[:34]
    while True:
        line = await _ask(convo, "[Enter to talk, /quit to leave] ")
        if line is None or line.strip() in ("/quit", "/exit"):
            return
        mic.drain()
        recording: asyncio.Queue[bytes | None] = asyncio.Queue()
        recorder = asyncio.create_task(_record(mic, recording))
        sending = asyncio.create_task(convo.send_audio(label, _drain(recording), plan.timeout_s))
        try:
            await _ask(convo, "[recording: Enter to send] ")
        except BaseException:
            sending.cancel()
            raise
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            recording.put_nowait(None)
        await sending


async def _record(mic: Microphone, queue: asyncio.Queue[bytes | None]) -> None:
    async for chunk in mic.chunks():
        queue.put_nowait(chunk)


async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (chunk := await queue.get()) is not None:
        yield chunk
