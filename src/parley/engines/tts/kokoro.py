"""Text to speech with Kokoro-82M on disk (``kokoro-onnx``: the ONNX export on onnxruntime).

``PARLEY_TTS_KOKORO_MODEL`` names the model (``kokoro-v1.0.onnx``, or an int8 variant) and
``PARLEY_TTS_KOKORO_VOICES`` the voices file (``voices-v1.0.bin``: one style array per voice).
kokoro-onnx phonemizes with espeak-ng from the ``espeakng-loader`` wheel through ``phonemizer``
(offline; it loads a private copy of the library, so it does not disturb the espeak engine).

Text is split into sentences (long ones into clauses); each is synthesized on the engine's one
worker thread, so the first sentence is heard while the next is made and sessions take turns
sentence by sentence; a cancelled request stops after the sentence in progress. Each piece is
trimmed of the model's edge silence (kokoro-onnx does it) and followed by the pause its final
punctuation calls for (0.25 s after a sentence, 0.1 s after a clause), so back-to-back calls keep
a natural rhythm. Output is 24 kHz. ``speed`` is passed to the model, clamped to 0.5-2.0 (the range
kokoro-onnx accepts). The language (espeak voice) follows the voice name's first letter, as in
Kokoro's voice list: ``a`` American English, ``b`` British English, ``e`` Spanish...
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from parley.config import Settings
from parley.engines.base import PCM, EngineError, MissingDependencyError
from parley.engines.tts.onnx_engine import OnnxTTS
from parley.engines.tts.voices import resolve_voice

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

NAME = "kokoro"
MODEL_SETTING = "PARLEY_TTS_KOKORO_MODEL"
VOICES_SETTING = "PARLEY_TTS_KOKORO_VOICES"
INSTALL = "pip install 'parley[kokoro]'"
SAMPLE_RATE = 24000
MIN_SPEED, MAX_SPEED = 0.5, 2.0
SENTENCE_PAUSE_S, CLAUSE_PAUSE_S = 0.25, 0.1

# Realtime API voice -> Kokoro v1.0 voice (hexgrad/Kokoro-82M VOICES.md), alike in gender and manner,
# preferring the better-graded voices of each kind.
VOICE_MAP: dict[str, str] = {
    "alloy": "af_alloy",
    "ash": "am_fenrir",
    "ballad": "bm_george",
    "coral": "af_bella",
    "echo": "am_echo",
    "sage": "af_sarah",
    "shimmer": "af_nova",
    "verse": "am_puck",
    "marin": "af_heart",
    "cedar": "am_michael",
}
DEFAULT_VOICE = VOICE_MAP["marin"]

# First letter of a Kokoro voice name -> espeak-ng language for its phonemes.
LANGUAGES: dict[str, str] = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}


def language(voice: str) -> str:
    """The espeak-ng language a Kokoro voice speaks (American English when the name does not say)."""
    return LANGUAGES.get(voice[:1], "en-us")


def clamp_speed(speed: float) -> float:
    """An API speed within what kokoro-onnx accepts."""
    if not math.isfinite(speed):
        return 1.0
    return min(MAX_SPEED, max(MIN_SPEED, speed))


def to_pcm(audio: npt.NDArray[np.floating], pause_s: float = 0.0) -> PCM:
    """Float audio in [-1, 1] to int16, followed by ``pause_s`` of silence."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    return np.concatenate([pcm, np.zeros(round(pause_s * SAMPLE_RATE), np.int16)])


def read_voice_names(path: Path) -> list[str]:
    """The voice names in a kokoro-onnx voices file (an npz archive), without loading the styles."""
    try:
        voices = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EngineError(f"{VOICES_SETTING}: cannot read the kokoro voices file {path}: {exc}") from exc
    if not isinstance(voices, np.lib.npyio.NpzFile):
        raise EngineError(f"{VOICES_SETTING}: {path} is not a kokoro voices file (an npz archive of styles)")
    with voices:
        names = sorted(voices.files)
    if not names:
        raise EngineError(f"{VOICES_SETTING}: the kokoro voices file {path} has no voices")
    return names


def _existing(path: Path | None, setting: str, what: str, example: str) -> Path:
    if path is None:
        raise EngineError(f"the kokoro TTS engine needs its {what}: set {setting} (e.g. to {example})")
    path = path.expanduser()
    if not path.is_file():
        raise EngineError(f"{setting}: the kokoro {what} {path} does not exist")
    return path


class KokoroTTS(OnnxTTS["Kokoro"]):
    """Kokoro speaking with the Realtime API's voice names."""

    name = NAME
    model_setting = MODEL_SETTING
    model_kind = "kokoro model"
    load_failure = "could not load kokoro from"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: Path,
        voices_file: Path,
        *,
        default_voice: str = "marin",
        voice_map: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__(model, default_voice=default_voice, voice_map=voice_map)
        self.voices_file = voices_file
        self.available = read_voice_names(voices_file)
        self._builtin = {api: voice for api, voice in VOICE_MAP.items() if voice in self.available}
        fallback = DEFAULT_VOICE if DEFAULT_VOICE in self.available else self.available[0]
        self._default = self._resolve(default_voice, fallback)
        self._styles: dict[str, npt.NDArray[np.float32]] = {}

    def _resolve(self, api_voice: str, default: str) -> str:
        voice = resolve_voice(
            api_voice,
            engine=NAME,
            settings_map=self._voice_map,
            builtin=self._builtin,
            available=self.available,
            default=default,
        )
        if voice not in self.available:
            raise EngineError(
                f"PARLEY_TTS_VOICE_MAP maps {api_voice!r} to kokoro voice {voice!r}, which is not in "
                f"{self.voices_file.name}"
            )
        return voice

    def kokoro_voice(self, voice: str) -> str:
        """The Kokoro voice an API voice (or a Kokoro voice name) speaks with."""
        return self._resolve(voice, self._default)

    def _open(self) -> Kokoro:
        """The model and voices."""
        from kokoro_onnx import Kokoro

        return Kokoro(str(self.model), str(self.voices_file))

    def _synthesize_blocking(self, text: str, voice: str, speed: float) -> PCM:
        from kokoro_onnx.chunker import pause_after

        kokoro = self.load()
        lang = language(voice)
        try:
            if voice not in self._styles:
                self._styles[voice] = np.asarray(kokoro.get_voice_style(voice), dtype=np.float32)
            phonemes = kokoro.tokenizer.phonemize(text, lang)
            if not phonemes:  # nothing speakable (symbols only, or a script the language lacks)
                return np.zeros(0, np.int16)
            audio, _ = kokoro.create(phonemes, self._styles[voice], speed=speed, lang=lang, is_phonemes=True)
        except Exception as exc:  # onnxruntime or phonemizer failure: report it as an engine error
            raise EngineError(f"kokoro synthesis failed: {exc}") from exc
        return to_pcm(audio, pause_after(phonemes, SENTENCE_PAUSE_S, CLAUSE_PAUSE_S))

    def _piece_synthesizer(self, voice: str, speed: float) -> Callable[[str], PCM]:
        return functools.partial(
            self._synthesize_blocking, voice=self.kokoro_voice(voice), speed=clamp_speed(speed)
        )


def create(settings: Settings) -> KokoroTTS:
    try:
        import kokoro_onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError(NAME, INSTALL) from None
    return KokoroTTS(
        _existing(settings.tts_kokoro_model, MODEL_SETTING, "model file", "kokoro-v1.0.onnx"),
        _existing(settings.tts_kokoro_voices, VOICES_SETTING, "voices file", "voices-v1.0.bin"),
        default_voice=settings.voice,
        voice_map=settings.tts_voice_map,
    )
