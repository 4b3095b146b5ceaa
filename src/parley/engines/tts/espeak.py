"""The default text-to-speech engine: espeak-ng 1.52 from the ``espeakng-loader`` wheel, via ctypes.

libespeak-ng keeps global state and is not thread-safe, so the library is loaded and initialised
once per process and every call into it holds one process-wide lock. Synthesis is synchronous (the
library calls back with samples) and runs on one dedicated worker thread, so many sessions queue
for it fairly without tying up the default executor. Long text is spoken sentence by sentence,
so the first chunk is ready after the first sentence; each piece ends with the pause its final
punctuation calls for (about 0.3 s after a full stop at 175 wpm), so back-to-back calls keep a
natural rhythm. espeak-ng output varies slightly from run to run. espeak-ng is GPL-3.0-or-later.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM, EngineError, MissingDependencyError
from parley.engines.tts.pieces import speak_pieces, speakable_pieces

NATIVE_RATE = 22050
DEFAULT_VOICE = "marin"
BASE_WPM = 175
MIN_WPM, MAX_WPM = 80, 450


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (``language+variant``) with pitch and pitch range (0-100, 50 = as is)."""

    name: str
    pitch: int = 50
    pitch_range: int = 50


# Realtime API voice -> espeak-ng voice, each a different variant. Chosen for machine
# intelligibility: pocketsphinx WER on 20 sentences at 175 wpm (the default en-us voice: ~80 %).
VOICE_MAP: dict[str, Voice] = {
    "alloy": Voice("en-us+klatt4", pitch=75, pitch_range=70),  # 49 %, raised pitch: neutral
    "ash": Voice("en-us+klatt5"),  # 47 %
    "ballad": Voice("en-us+benjamin"),  # 54 %
    "coral": Voice("en-us+f2"),  # 36 %
    "echo": Voice("en-us+klatt3"),  # 59 %
    "sage": Voice("en-us+f3"),  # 68 %
    "shimmer": Voice("en-us+f1"),  # 73 %
    "verse": Voice("en-us+michel"),  # 60 %
    "marin": Voice("en-us+f5"),  # 33 %
    "cedar": Voice("en-us+edward", pitch=35),  # 44 %, deep
}

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_BUFFER_MS = 100

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)


@dataclass
class _Library:
    lib: ctypes.CDLL
    rate: int
    callback: object  # keeps the ctypes callback alive
    voice: str | None = None  # the voice currently loaded


_LOCK = threading.RLock()
_LIB: _Library | None = None
_SINK: list[bytes] = []
_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _on_samples(wav: int | None, count: int, _events: int | None) -> int:
    if wav and count > 0:
        _SINK.append(ctypes.string_at(wav, count * 2))
    return 0


def _library() -> _Library:
    """Load and initialise libespeak-ng once; call with ``_LOCK`` held."""
    global _LIB
    if _LIB is not None:
        return _LIB
    try:
        import espeakng_loader
    except ImportError:
        raise MissingDependencyError("espeak", "pip install espeakng-loader==0.2.4") from None
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise EngineError(f"could not load espeak-ng: {exc}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise EngineError(f"espeak-ng failed to initialise (data at {data_path})")
    callback = _SynthCallback(_on_samples)
    lib.espeak_SetSynthCallback(callback)
    _LIB = _Library(lib=lib, rate=rate, callback=callback)
    return _LIB


def _synthesize_blocking(text: str, voice: Voice, wpm: int) -> PCM:
    """Speak one piece of text to int16 samples (runs on the worker thread)."""
    with _LOCK:
        state = _library()
        if state.voice != voice.name:
            if state.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise EngineError(f"espeak-ng has no voice {voice.name!r}")
            state.voice = voice.name
        for param, value in (
            (_PARAM_RATE, wpm),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
        ):
            state.lib.espeak_SetParameter(param, value, 0)
        encoded = text.encode("utf-8") + b"\0"
        _SINK.clear()
        try:
            err = state.lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
            if err != 0:
                raise EngineError(f"espeak-ng synthesis failed (error {err})")
            audio = bytearray(b"".join(_SINK))
        finally:
            _SINK.clear()
    return np.frombuffer(audio, dtype=np.int16)


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-espeak")
        return _EXECUTOR


def words_per_minute(speed: float) -> int:
    """API speed (0.25-1.5, 1 = normal) to espeak-ng words per minute, within espeak's range."""
    if not math.isfinite(speed):
        speed = 1.0
    return max(MIN_WPM, min(MAX_WPM, round(BASE_WPM * speed)))


class EspeakTTS:
    """espeak-ng speaking with the Realtime API's voice names."""

    name = "espeak"

    def __init__(self, *, default_voice: str = DEFAULT_VOICE) -> None:
        self.sample_rate = NATIVE_RATE
        self.default_voice = default_voice if default_voice in VOICE_MAP else DEFAULT_VOICE

    def voices(self) -> list[str]:
        return list(VOICE_MAP)

    def espeak_voice(self, voice: str) -> Voice:
        """The espeak-ng voice for an API voice name; unknown names get the default voice."""
        return VOICE_MAP.get(voice, VOICE_MAP[self.default_voice])

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        pieces = speakable_pieces(text)
        if not pieces:
            return
        espeak_voice = self.espeak_voice(voice)
        wpm = words_per_minute(speed)

        def speak(piece: str) -> PCM:
            try:
                return _synthesize_blocking(piece, espeak_voice, wpm)
            except EngineError:
                raise
            except Exception as exc:  # a ctypes or library failure: report it as an engine error
                raise EngineError(f"espeak-ng synthesis failed: {exc}") from exc

        async for pcm in speak_pieces(pieces, _executor(), speak):
            yield pcm

    async def warm_up(self) -> None:
        def check() -> None:
            with _LOCK:
                rate = _library().rate
            if rate != NATIVE_RATE:
                raise EngineError(f"espeak-ng reports {rate} Hz, expected {NATIVE_RATE}")

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_executor(), check)
        async for _ in self.synthesize("Hello.", voice=self.default_voice):
            pass


def create(settings: Settings) -> EspeakTTS:
    return EspeakTTS(default_voice=settings.voice)
