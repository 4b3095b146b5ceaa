"""Text to speech with a Piper voice on disk (``piper-tts``: VITS models on onnxruntime).

``PARLEY_TTS_PIPER_VOICE`` names the voice's ``.onnx`` file; its config is the ``.onnx.json`` beside
it (sample rate, phoneme map, speakers). Piper phonemizes with the espeak-ng built into its wheel
(offline) and synthesizes one sentence per model run. Text is split into sentences (long ones into
clauses) and each is synthesized on the engine's one worker thread, so the first sentence is heard
while the next is made and sessions take turns sentence by sentence; a cancelled request stops
after the sentence in progress. Output is piper's, peak-normalised per sentence, at the voice's
rate (usually 22050 Hz). Voices whose phonemizer needs more (Chinese: the g2pW model, which piper
fetches into the voice's directory on first use unless it is there; Japanese, Thai, Hebrew: extra
packages) work as far as piper provides; English and other espeak-ng voices need nothing else.

Voices: a multi-speaker voice (``speaker_id_map`` in its config) spreads the ten Realtime API voices
over its speakers; ``PARLEY_TTS_VOICE_MAP`` (``{"piper": {"alloy": "3"}}``) can map an API voice to
a speaker name or id instead. A single-speaker voice speaks every API voice the same. ``speed``
divides the voice's length scale.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM, EngineError, MissingDependencyError
from parley.engines.tts.onnx_engine import OnnxTTS
from parley.engines.tts.voices import resolve_voice
from parley.protocol.session_config import VOICES

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig
    from piper.config import PiperConfig

NAME = "piper"
SETTING = "PARLEY_TTS_PIPER_VOICE"
INSTALL = "pip install 'parley[piper]'"
MIN_SPEED, MAX_SPEED = 0.25, 4.0


def speaker_table(speakers: dict[str, int], num_speakers: int) -> dict[str, str]:
    """The built-in API voice -> speaker table: the ten voices spread evenly over the speakers.

    Values are speaker names from ``speaker_id_map`` or, for voices without one, speaker ids.
    """
    if num_speakers <= 1:
        return {}
    names: dict[int, str] = {}
    for name, index in speakers.items():
        names.setdefault(index, name)
    ids = sorted(names) if names else list(range(num_speakers))
    table: dict[str, str] = {}
    for position, api_voice in enumerate(VOICES):
        speaker = ids[position * len(ids) // len(VOICES)]
        table[api_voice] = names.get(speaker, str(speaker))
    return table


def length_scale(base: float, speed: float) -> float:
    """The length scale for an API speed: the voice's own scale divided by the (clamped) speed."""
    if not math.isfinite(speed) or speed <= 0:
        speed = 1.0
    return base / min(MAX_SPEED, max(MIN_SPEED, speed))


def _load_config(model: Path) -> PiperConfig:
    from piper.config import PiperConfig

    config_path = Path(f"{model}.json")
    if not model.is_file():
        raise EngineError(f"{SETTING}: the piper voice model {model} does not exist")
    if not config_path.is_file():
        raise EngineError(
            f"{SETTING}: the piper voice config {config_path} (beside the model) does not exist"
        )
    try:
        return PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"{SETTING}: {config_path} is not a piper voice config ({exc!r})") from exc


class PiperTTS(OnnxTTS["PiperVoice"]):
    """A Piper voice speaking with the Realtime API's voice names."""

    name = NAME
    model_setting = SETTING
    model_kind = "piper voice"
    load_failure = "could not load the piper voice"

    def __init__(
        self,
        model: Path,
        *,
        default_voice: str = "marin",
        voice_map: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__(model, default_voice=default_voice, voice_map=voice_map)
        self.config = _load_config(model)
        self.sample_rate = self.config.sample_rate
        self._speakers = dict(self.config.speaker_id_map)
        self._builtin = speaker_table(self._speakers, self.config.num_speakers)
        available = set(self._speakers) | {str(i) for i in range(self.config.num_speakers)}
        self._available = frozenset(available)
        self._default_speaker = self.config.default_speaker_id
        if self.config.num_speakers > 1:  # a single-speaker voice ignores the voice name
            self._default_speaker = self._speaker(default_voice, str(self._default_speaker))

    def speaker_id(self, voice: str) -> int | None:
        """The speaker id an API voice (or a speaker name) speaks with; None for a single-speaker voice."""
        if self.config.num_speakers <= 1:
            return None
        return self._speaker(voice, str(self._default_speaker))

    def _speaker(self, voice: str, default: str) -> int:
        speaker = resolve_voice(
            voice,
            engine=NAME,
            settings_map=self._voice_map,
            builtin=self._builtin,
            available=self._available,
            default=default,
        )
        if speaker in self._speakers:
            return self._speakers[speaker]
        if speaker.isdigit() and int(speaker) < self.config.num_speakers:
            return int(speaker)
        raise EngineError(
            f"PARLEY_TTS_VOICE_MAP maps {voice!r} to piper speaker {speaker!r}, which {self.model.name} "
            f"does not have (it has {', '.join(sorted(self._speakers)) or self.config.num_speakers})"
        )

    def _open(self) -> PiperVoice:
        """The voice."""
        from piper import PiperVoice

        return PiperVoice.load(self.model, download_dir=self.model.parent)

    def _synthesize_blocking(self, text: str, syn_config: SynthesisConfig) -> PCM:
        voice = self.load()
        try:
            chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config)]
        except Exception as exc:  # onnxruntime or phonemizer failure: report it as an engine error
            raise EngineError(f"piper synthesis failed: {exc}") from exc
        return np.concatenate(chunks).astype(np.int16, copy=False) if chunks else np.zeros(0, np.int16)

    def _piece_synthesizer(self, voice: str, speed: float) -> Callable[[str], PCM]:
        from piper import SynthesisConfig

        syn_config = SynthesisConfig(
            speaker_id=self.speaker_id(voice), length_scale=length_scale(self.config.length_scale, speed)
        )
        return functools.partial(self._synthesize_blocking, syn_config=syn_config)


def create(settings: Settings) -> PiperTTS:
    try:
        import piper  # noqa: F401
    except ImportError:
        raise MissingDependencyError(NAME, INSTALL) from None
    if settings.tts_piper_voice is None:
        raise EngineError(f"the piper TTS engine needs a voice: set {SETTING} to a piper voice .onnx file")
    return PiperTTS(
        settings.tts_piper_voice.expanduser(),
        default_voice=settings.voice,
        voice_map=settings.tts_voice_map,
    )
