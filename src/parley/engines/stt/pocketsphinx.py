"""Speech recognition with pocketsphinx 5 and the English model inside its wheel (offline).

A ``Decoder`` takes ~0.5 s and ~95 MB to build, so at most ``max_decoders`` are built, lazily, and
reused: a stream borrows one for its utterance and gives it back on ``finish``/``close``; when all are
busy its first ``feed`` waits (backpressure rather than memory).

pocketsphinx 5.1.1's binding holds the GIL in ``process_raw`` and ``end_utt``, so the worker threads
do not run decoders in parallel; audio is decoded in ``SLICE_SAMPLES`` slices so the event loop gets
the GIL back between them. The second (``fwdflat``) pass is off: it made ``end_utt`` (the latency of
the final result, GIL held) 3-4 times slower with no accuracy gain on our test speech.

Calls are serialised per stream (an ``asyncio.Lock``, and waiting for the thread of a cancelled call)
and per decoder (a ``threading.Lock``); work of a stream that has given its decoder back is skipped
(lease generations), so it never leaks into the next utterance. The cepstral mean reached after the
last utterance with words starts every utterance, whichever decoder runs it: a fresh decoder's own
initial mean costs accuracy on its first utterances.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM, EngineError, Transcription
from parley.engines.stt.streams import drop_result, mono_int16

log = logging.getLogger("parley.engines.stt.pocketsphinx")

T = TypeVar("T")

SAMPLE_RATE = 16000
MAX_DECODERS = 4
"""Decoders one engine builds at most (each ~95 MB); all of them share one core's worth of GIL."""
SLICE_SAMPLES = 800
"""Audio handed to ``process_raw`` per call (50 ms): the event loop waits at most one slice."""
CMN_INIT = "41.00,-5.29,-0.12,5.09,2.48,-4.07,-1.37,-1.78,-5.08,-2.05,-6.45,-1.42,1.17"
"""Initial cepstral mean used by upstream's examples for this model; better than the built-in one."""
CMN_INIT_NARROWBAND = "48.97,31.91,-31.93,54.25,-19.07,1.38,19.49,-24.62,14.81,-14.09,5.17,10.71,-15.35"
"""The mean this model settles on for telephone audio (8 kHz G.711, no energy above 4 kHz), measured on
32 flite utterances; a first utterance from a phone line starts from it. It raises the first-utterance
word recall on such audio from 17 % to 81 % (bench figures in ENGINES.md's method)."""

_ENGLISH = re.compile(r"^en([-_][a-z0-9]+)*$", re.IGNORECASE)


def is_english(language: str | None) -> bool:
    """True for no language and for ``en`` with any region or script (``en-US``, ``en_gb``)."""
    return not language or _ENGLISH.match(language.strip()) is not None


def _new_decoder(fwdflat: bool) -> Any:
    from pocketsphinx import Decoder

    return Decoder(loglevel="FATAL", logfn=os.devnull, fwdflat=fwdflat, cmninit=CMN_INIT)


class _Stale(Exception):
    """Work issued under a lease that has ended; it was skipped."""


class _Slot:
    """One decoder and the state needed to share it safely."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.lock = threading.Lock()
        self.generation = 0  # bumped each time the decoder goes back to the pool
        self.utterance = -1  # the generation whose utterance the decoder is in, or -1
        self.broken = False
        self.ended: tuple[int, str, str] = (-1, "", "")

    def run(self, generation: int, work: Callable[[_Slot], T]) -> T:
        """Run ``work(self)`` in the calling (worker) thread, unless that lease has ended."""
        with self.lock:
            if self.generation != generation:
                raise _Stale
            try:
                return work(self)
            except Exception:
                self.broken = True
                raise

    # The methods below run in worker threads under ``lock``, for the current generation.

    def process(self, data: PCM, cmn: str) -> str:
        if self.utterance != self.generation:
            if self.utterance >= 0:  # abandoned by a closed stream
                self.decoder.end_utt()
            self.decoder.set_cmn(cmn)
            self.decoder.start_utt()
            self.utterance = self.generation
        for start in range(0, len(data), SLICE_SAMPLES):
            self.decoder.process_raw(data[start : start + SLICE_SAMPLES].tobytes(), False, False)
        return self._hyp()

    def end(self) -> tuple[str, str]:
        """The final text and the cepstral mean after it (repeatable within one lease)."""
        if self.utterance == self.generation:
            self.decoder.end_utt()
            self.utterance = -1
            self.ended = (self.generation, self._hyp(), str(self.decoder.get_cmn()))
        if self.ended[0] == self.generation:
            return self.ended[1], self.ended[2]
        return "", ""

    def _hyp(self) -> str:
        hyp = self.decoder.hyp()
        return str(hyp.hypstr).strip() if hyp is not None else ""


class DecoderPool:
    """At most ``max_decoders`` decoders, built lazily in threads and reused."""

    def __init__(self, max_decoders: int = MAX_DECODERS, *, fwdflat: bool = False) -> None:
        if max_decoders < 1:
            raise ValueError("max_decoders must be at least 1")
        self.max_decoders = max_decoders
        self.fwdflat = fwdflat
        self.built = 0  # decoders constructed so far, including any discarded after an error
        self.live = 0  # decoders idle, leased or being built
        self._idle: list[_Slot] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self) -> _Slot:
        while True:
            with self._lock:
                while self._idle:
                    slot = self._idle.pop()
                    if not slot.broken:
                        return slot
                    self.live -= 1
                build = self.live < self.max_decoders
                if build:
                    self.live += 1
                else:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
            if build:
                return await self._build()
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                self._wake_one()  # pass on a wake-up this waiter may have received
                raise

    async def _build(self) -> _Slot:
        task = asyncio.ensure_future(asyncio.to_thread(_new_decoder, self.fwdflat))
        try:
            decoder = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._adopt)  # keep it once it is built
            raise
        except Exception as exc:
            self._forget()
            raise EngineError(f"could not start the pocketsphinx recogniser: {exc}") from exc
        self.built += 1
        return _Slot(decoder)

    def _adopt(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self._forget()
        else:
            self.built += 1
            self.release(_Slot(task.result()))

    def _forget(self) -> None:
        with self._lock:
            self.live -= 1
        self._wake_one()

    def release(self, slot: _Slot) -> None:
        """Take a decoder back (thread-safe); work still queued on the old lease is skipped."""
        slot.generation += 1
        with self._lock:
            if slot.broken:
                self.live -= 1
            else:
                self._idle.append(slot)
        self._wake_one()

    def _wake_one(self) -> None:
        while True:
            with self._lock:
                if not self._waiters:
                    return
                waiter = self._waiters.popleft()
            try:
                waiter.get_loop().call_soon_threadsafe(self._resolve, waiter)
                return
            except RuntimeError:  # its event loop is closed
                continue

    def _resolve(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled meanwhile
            self._wake_one()
        else:
            waiter.set_result(None)


class _Lease:
    """The slot a stream holds; kept apart from the stream so a finaliser can return it."""

    def __init__(self, pool: DecoderPool) -> None:
        self.pool = pool
        self.slot: _Slot | None = None
        self.generation = 0

    def give_back(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            self.pool.release(slot)


def _initial_cmn(channel: dict[str, Any]) -> str:
    """A channel's first cepstral mean: telephone audio (``source_rate`` 8 kHz) has its own."""
    return CMN_INIT_NARROWBAND if int(channel.get("source_rate", SAMPLE_RATE)) <= 8000 else CMN_INIT


class PocketsphinxStream:
    """One utterance on a borrowed decoder. Use it from one event loop."""

    def __init__(self, pool: DecoderPool, channel: dict[str, Any] | None = None) -> None:
        self._pool = pool
        self._channel = channel if channel is not None else {}
        self._lease = _Lease(pool)
        weakref.finalize(self, _Lease.give_back, self._lease)  # a stream dropped without close()
        self._lock = asyncio.Lock()
        self._busy: asyncio.Future[Any] | None = None
        self._state = "open"  # open | finished | closed
        self._samples = 0
        self._partial = ""
        self._result: Transcription | None = None

    async def feed(self, pcm: PCM) -> str | None:
        data = np.ascontiguousarray(mono_int16(pcm, "pocketsphinx"))
        if self._state != "open":
            raise EngineError(f"this recognition stream is already {self._state}")
        if not len(data):
            return None
        async with self._lock:
            if self._state != "open":  # closed while waiting for an earlier feed
                return None
            slot = await self._slot()
            if slot is None:  # closed while waiting for a decoder
                return None
            self._samples += len(data)
            cmn = self._channel.get("cmn") or _initial_cmn(self._channel)
            partial = await self._run(lambda s: s.process(data, cmn), "decode audio")
        if partial is None or partial == self._partial or self._state != "open":
            return None
        self._partial = partial
        return partial

    async def finish(self) -> Transcription:
        async with self._lock:
            if self._result is not None:
                return self._result
            if self._state == "closed":
                raise EngineError("this recognition stream was closed")
            text = ""
            if self._lease.slot is not None:
                ended = await self._run(lambda s: s.end(), "finish the utterance")
                if ended is None:
                    raise EngineError("this recognition stream was closed")
                text, cmn = ended
                if text:  # the channel's cepstral mean so far starts its next utterance
                    self._channel["cmn"] = cmn
            self._result = Transcription(text=text, audio_seconds=self._samples / SAMPLE_RATE, language="en")
            self._state = "finished"
            self._lease.give_back()
            return self._result

    def close(self) -> None:
        if self._state == "open":
            self._state = "closed"
        self._lease.give_back()

    async def _slot(self) -> _Slot | None:
        if self._lease.slot is None:
            slot = await self._pool.acquire()
            if self._state != "open":
                self._pool.release(slot)
                return None
            self._lease.slot = slot
            self._lease.generation = slot.generation
        return self._lease.slot

    async def _run(self, work: Callable[[_Slot], T], what: str) -> T | None:
        """Run ``work`` on the leased decoder in a thread, after any earlier work of this stream.

        Returns None when the stream was closed before the work could run."""
        if self._busy is not None and not self._busy.done():
            await asyncio.wait([self._busy])  # its caller was cancelled; keep the order
        slot = self._lease.slot
        if slot is None:
            return None
        task = asyncio.ensure_future(asyncio.to_thread(slot.run, self._lease.generation, work))
        task.add_done_callback(drop_result)
        self._busy = task
        try:
            return await asyncio.shield(task)
        except _Stale:
            return None
        except Exception as exc:
            self._state = "closed"
            self._lease.give_back()
            raise EngineError(f"pocketsphinx failed to {what}: {exc}") from exc


class PocketsphinxSTT:
    """The ``pocketsphinx`` speech-to-text engine: English only, 16 kHz, streaming partials."""

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE

    def __init__(self, max_decoders: int = MAX_DECODERS, *, fwdflat: bool = False) -> None:
        self.pool = DecoderPool(max_decoders, fwdflat=fwdflat)

    def start(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        channel: dict[str, Any] | None = None,
    ) -> PocketsphinxStream:
        """Begin an utterance.

        ``channel`` carries the cepstral mean (the microphone and line's colouring) from one
        utterance of a source to its next, so recognition adapts to each caller separately; its
        ``source_rate`` (the rate the audio had before resampling) picks the first one.

        ``language`` must be None or English (``en``, ``en-US``, ``en_GB``...): the bundled model is
        English only. ``prompt`` is not used: pocketsphinx's n-gram search cannot be steered by free
        text, so it is accepted and ignored.
        """
        if not is_english(language):
            raise EngineError(
                f"The pocketsphinx engine only has an English model and cannot recognise {language!r}; "
                "set PARLEY_STT to another speech-to-text engine for other languages.",
                code="unsupported_language",
            )
        if prompt:
            log.debug("pocketsphinx does not use transcription prompts; ignoring it")
        return PocketsphinxStream(self.pool, channel)

    async def warm_up(self) -> None:
        """Build one decoder and decode a short silence with it."""
        stream = self.start()
        try:
            await stream.feed(np.zeros(SAMPLE_RATE // 4, dtype=np.int16))
            await stream.finish()
        finally:
            stream.close()


def create(settings: Settings) -> PocketsphinxSTT:
    return PocketsphinxSTT()
