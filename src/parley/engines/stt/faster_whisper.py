"""Speech recognition with faster-whisper (Whisper on CTranslate2): multilingual, with word timings.

Whisper does not stream, so partials come from re-decoding the utterance: each
``stt_whisper_partial_ms`` of new audio, ``feed`` starts a greedy decode (beam 1, no timestamps) of
the last 30 s (Whisper's window) in a worker thread, and a later ``feed`` returns its text if it
changed; ``feed`` never waits. A stream has at most one partial decode in flight, and none starts
while the engine runs ``NUM_WORKERS`` decodes: partials are skipped, never queued, so they cannot
delay finals. ``finish`` decodes the whole utterance (faster-whisper walks windows past 30 s) with
``stt_whisper_beam_size``, the language and prompt, word timestamps, and one retry at temperature
0.5 if the first decode looks failed; faster-whisper's VAD filter is off (Parley's VAD cut the
utterance). Decodes emit at most 12 tokens per second of audio (fast speech needs under 8), which
cuts Whisper's repetition loops short.

One ``WhisperModel`` (device ``auto``: a CUDA GPU if there is one) serves every stream, loaded on
first use or by ``warm_up``; CTranslate2 runs ``NUM_WORKERS`` decodes at once, without the GIL. A
closed or cancelled stream drops the result of a running decode (CTranslate2 cannot stop one); a
long final stops at the next window. Partials lag the audio by one decode. ``channel`` is unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM, EngineError, MissingDependencyError, Transcription, Word
from parley.engines.stt.streams import drop_result, mono_int16

log = logging.getLogger("parley.engines.stt.faster_whisper")
T = TypeVar("T")

NAME = "faster-whisper"
INSTALL = "pip install 'parley[faster-whisper]'"
SETTING = "PARLEY_STT_WHISPER_MODEL"
SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper hears 30 s at a time: partials decode the last 30 s
NUM_WORKERS = 2  # decodes CTranslate2 runs at once (model replicas sharing the weights)
FINAL_TEMPERATURES = (0.0, 0.5)
TOKENS_PER_SECOND = 12
MIN_NEW_TOKENS = 16
MAX_NEW_TOKENS = 220  # Whisper's 448-token context less the longest prompt faster-whisper builds

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*")
_ALIASES = {"fil": "tl", "in": "id", "iw": "he", "jv": "jw", "nb": "no"}  # Whisper's own codes


def whisper_language(language: str | None) -> str | None:
    """Whisper's code for a BCP 47 tag (``en-US`` -> ``en``); None (detect) for none or ``auto``."""
    text = (language or "").strip()
    if not text or text.lower() == "auto":
        return None
    match = _LANGUAGE.fullmatch(text)
    code = match.group(1).lower() if match else text
    return _ALIASES.get(code, code)


@dataclass(frozen=True)
class WhisperOptions:
    model: str  # a CTranslate2 model directory, or a name faster-whisper downloads
    compute_type: str = "int8"
    threads: int = 0
    beam_size: int = 1
    partial_ms: int = 600


@dataclass(frozen=True)
class _Request:
    """What a stream asks of every decode: Whisper's language code (None: detect it), the language
    as the session gave it (for messages), and the prompt."""

    language: str | None
    asked: str | None
    prompt: str | None


class _Cancelled(EngineError):
    """The stream was closed while its final decode ran."""


def _max_new_tokens(samples: int) -> int:
    return min(MAX_NEW_TOKENS, MIN_NEW_TOKENS + math.ceil(TOKENS_PER_SECOND * samples / SAMPLE_RATE))


class FasterWhisperSTT:
    """The ``faster-whisper`` speech-to-text engine: 16 kHz, partials by re-decoding."""

    name = NAME
    sample_rate = SAMPLE_RATE

    def __init__(self, options: WhisperOptions) -> None:
        self.options = options
        self.partial_samples = options.partial_ms * SAMPLE_RATE // 1000
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=2 * NUM_WORKERS, thread_name_prefix="faster-whisper")
        self._count_lock = threading.Lock()
        self.in_flight = 0  # decodes submitted and not finished (queued or running)

    def start(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        channel: dict[str, Any] | None = None,
    ) -> WhisperStream:
        """Begin an utterance in ``language`` (a BCP 47 tag, or None to detect it), with ``prompt``
        (vocabulary or previous text that steers recognition). ``channel`` is not used."""
        request = _Request(whisper_language(language), language, prompt.strip() if prompt else None)
        if self._model is not None:
            self._check_language(self._model, request)
        return WhisperStream(self, request)

    async def warm_up(self) -> None:
        """Load the model and decode half a second of silence."""
        stream = self.start()
        try:
            await stream.feed(np.zeros(SAMPLE_RATE // 2, dtype=np.int16))
            await stream.finish()
        finally:
            stream.close()

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (by ``warm_up`` or a first decode)."""
        return self._model is not None

    def submit(self, work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``work(*args)`` in a thread; cancelling the result drops it (or unqueues the work)."""
        with self._count_lock:
            self.in_flight += 1
        future: Future[T] = self._executor.submit(self._run, work, *args)
        future.add_done_callback(self._count_out)
        wrapped = asyncio.wrap_future(future)
        wrapped.add_done_callback(drop_result)
        return wrapped

    def _run(self, work: Callable[..., T], *args: Any) -> T:
        try:
            return work(*args)
        finally:  # counted out before the result reaches the event loop
            self._count_out()

    def _count_out(self, future: Future[Any] | None = None) -> None:
        if future is None or future.cancelled():  # as a done callback: only work that never ran
            with self._count_lock:
                self.in_flight -= 1

    def model(self) -> Any:
        """The shared ``WhisperModel``, loaded on first use (in a worker thread, like all below)."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        from faster_whisper import WhisperModel

        source, compute_type, threads = self.options.model, self.options.compute_type, self.options.threads
        try:  # device "auto": a CUDA GPU if there is one
            model = WhisperModel(
                source, compute_type=compute_type, cpu_threads=threads, num_workers=NUM_WORKERS
            )
        except ValueError as exc:  # CTranslate2 rejects the compute type
            raise EngineError(
                f"faster-whisper cannot load {source!r} with compute type {compute_type!r} "
                f"(PARLEY_STT_WHISPER_COMPUTE_TYPE): {exc}"
            ) from exc
        except Exception as exc:
            where = "load" if Path(source).expanduser().is_dir() else "download"
            raise EngineError(
                f"faster-whisper could not {where} the Whisper model {source!r} ({SETTING}): {exc}"
            ) from exc
        kind = "multilingual" if model.model.is_multilingual else "English-only"
        log.info("loaded the %s Whisper model %s", kind, source)
        return model

    def _check_language(self, model: Any, request: _Request) -> None:
        if request.language is None or request.language in model.supported_languages:
            return
        kind = "multilingual" if model.model.is_multilingual else "English-only"
        raise EngineError(
            f"The {kind} Whisper model {self.options.model!r} cannot recognise {request.asked!r}.",
            code="unsupported_language",
        )

    def decode_partial(self, pcm: PCM, request: _Request) -> str:
        """Greedy decode of one window, without timestamps."""
        with _engine_errors():
            segments, _ = self._transcribe(
                pcm, request, beam_size=1, temperature=0.0, without_timestamps=True
            )
            return "".join(segment.text for segment in segments).strip()

    def decode_final(self, pcm: PCM, request: _Request, cancelled: threading.Event) -> Transcription:
        """The whole utterance with word timings; stops between windows once ``cancelled``."""
        seconds = len(pcm) / SAMPLE_RATE
        texts: list[str] = []
        words: list[Word] = []
        with _engine_errors():
            beam_size, temperature = self.options.beam_size, list(FINAL_TEMPERATURES)
            segments, info = self._transcribe(
                pcm, request, beam_size=beam_size, temperature=temperature, word_timestamps=True
            )
            for segment in segments:  # each window is decoded as the loop asks for it
                if cancelled.is_set():
                    raise _Cancelled("this recognition stream was closed")
                texts.append(segment.text)
                words.extend(_word(word, seconds) for word in segment.words or () if word.word.strip())
        text = "".join(texts).strip()
        return Transcription(text=text, audio_seconds=seconds, language=info.language, words=tuple(words))

    def _transcribe(self, pcm: PCM, request: _Request, **options: Any) -> tuple[Any, Any]:
        model = self.model()
        self._check_language(model, request)
        return model.transcribe(  # type: ignore[no-any-return]
            pcm.astype(np.float32) / 32768.0,
            language=request.language,
            initial_prompt=request.prompt,
            vad_filter=False,
            condition_on_previous_text=False,
            max_new_tokens=_max_new_tokens(len(pcm)),
            **options,
        )


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(f"faster-whisper failed to transcribe: {exc}") from exc


def _word(word: Any, seconds: float) -> Word:
    """A faster-whisper word, its times kept inside the utterance."""
    start = min(max(float(word.start), 0.0), seconds)
    return Word(text=word.word.strip(), start=start, end=min(max(float(word.end), start), seconds))


class WhisperStream:
    """One utterance. Use it from one event loop."""

    def __init__(self, engine: FasterWhisperSTT, request: _Request) -> None:
        self._engine = engine
        self._request = request
        self._chunks: list[PCM] = []
        self._samples = 0
        self._decoded_at = 0  # samples heard when the last partial decode started
        self._partial = ""
        self._partial_task: asyncio.Future[str] | None = None
        self._final_task: asyncio.Future[Transcription] | None = None
        self._cancelled = threading.Event()
        self._state = "open"  # open | finishing | finished | closed
        self._result: Transcription | None = None

    async def feed(self, pcm: PCM) -> str | None:
        """Buffer audio; start a partial decode when one is due; return a newer partial if one came."""
        data = np.array(mono_int16(pcm, "faster-whisper"))  # a copy: the caller may reuse its buffer
        if self._state != "open":
            raise EngineError(f"this recognition stream is already {self._state}")
        if len(data):
            self._chunks.append(data)
            self._samples += len(data)
        partial = self._collect_partial()
        engine = self._engine
        due = self._samples - self._decoded_at >= engine.partial_samples
        if due and self._partial_task is None and engine.in_flight < NUM_WORKERS:
            self._decoded_at = self._samples
            self._partial_task = engine.submit(
                engine.decode_partial, self._tail(WINDOW_SAMPLES), self._request
            )
        return partial

    def _collect_partial(self) -> str | None:
        task = self._partial_task
        if task is None or not task.done():
            return None
        self._partial_task = None
        text = task.result()  # an EngineError of the decode surfaces here
        if text == self._partial:
            return None
        self._partial = text
        return text

    async def finish(self) -> Transcription:
        """Decode the whole utterance. Cancelling this closes the stream and drops the result."""
        if self._result is not None:
            return self._result
        if self._state == "closed":
            raise EngineError("this recognition stream was closed")
        if self._final_task is None:
            if not self._samples:
                self._state, self._result = "finished", Transcription("", 0.0, self._request.language)
                return self._result
            self._state = "finishing"
            if self._partial_task is not None:  # no longer wanted: unqueue it or drop its result
                self._partial_task.cancel()
                self._partial_task = None
            engine = self._engine
            audio = self._tail(self._samples)
            self._final_task = engine.submit(engine.decode_final, audio, self._request, self._cancelled)
            self._chunks = []
        task = self._final_task
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():  # by close()
                raise EngineError("this recognition stream was closed") from None
            self.close()
            raise
        self._result = result
        self._state = "finished"
        return result

    def close(self) -> None:
        if self._state in ("open", "finishing"):
            self._state = "closed"
        self._cancelled.set()
        self._chunks = []
        for task in (self._partial_task, self._final_task):
            if task is not None:
                task.cancel()  # unqueues a decode not started; one running finishes unheard
        self._partial_task = None

    def _tail(self, samples: int) -> PCM:
        """The last ``samples`` samples heard (fewer if fewer were heard)."""
        first, count = len(self._chunks), 0
        while first and count < samples:
            first -= 1
            count += len(self._chunks[first])
        return np.concatenate([np.zeros(0, dtype=np.int16), *self._chunks[first:]])[-samples:]


def _model_source(value: str | None) -> str:
    """The model directory or downloadable name in the settings, checked without loading it."""
    value = (value or "").strip()
    if not value:
        raise EngineError(
            f"the faster-whisper STT engine needs a model: set {SETTING} to a CTranslate2 Whisper "
            "model directory (or, on a machine with internet access, a model name such as small)"
        )
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise EngineError(
                f"{SETTING}={value}: the directory has no model.bin; it must hold a Whisper model "
                "converted to CTranslate2 (ct2-transformers-converter, or Systran/faster-whisper-*)"
            )
        return str(path)
    from faster_whisper.utils import available_models

    if value in available_models() or (_HUB_ID.fullmatch(value) and not value.startswith(".")):
        return value  # downloaded from the Hugging Face hub when first loaded
    raise EngineError(
        f"{SETTING}={value}: no such model directory, and not a model name "
        f"({', '.join(available_models())}) or a Hugging Face repository id"
    )


def create(settings: Settings) -> FasterWhisperSTT:
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        raise MissingDependencyError(NAME, INSTALL) from None
    options = WhisperOptions(
        model=_model_source(settings.stt_whisper_model),
        compute_type=settings.stt_whisper_compute_type,
        # Each of the NUM_WORKERS decoders gets its share of the cores (CTranslate2's own default, 4
        # threads each, made finals twice as slow on 2 cores).
        threads=settings.stt_whisper_threads or max(1, len(os.sched_getaffinity(0)) // NUM_WORKERS),
        beam_size=settings.stt_whisper_beam_size,
        partial_ms=settings.stt_whisper_partial_ms,
    )
    return FasterWhisperSTT(options)
