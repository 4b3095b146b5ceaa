"""What the ONNX text-to-speech engines (piper, kokoro) share: a model file loaded once (at warm-up
or on first use) and text spoken a piece at a time on the engine's one worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from parley.engines.base import PCM, EngineError
from parley.engines.tts.pieces import speak_pieces, speakable_pieces
from parley.protocol.session_config import VOICES

WARM_UP_TEXT = "Hello."

Model = TypeVar("Model")


class OnnxTTS(ABC, Generic[Model]):
    """A TTS engine with a model file on disk, speaking with the Realtime API's voice names.

    A subclass opens the model (``_open``) and makes the blocking function that speaks one piece
    (``_piece_synthesizer``)."""

    name: ClassVar[str]
    model_setting: ClassVar[str]
    """The setting that names the model file (named when it cannot be loaded)."""
    model_kind: ClassVar[str]
    """What the log calls the model: ``kokoro model``, ``piper voice``."""
    load_failure: ClassVar[str]
    """The start of the message when the model cannot be loaded: ``could not load kokoro from``."""

    def __init__(
        self, model: Path, *, default_voice: str, voice_map: dict[str, dict[str, str]] | None
    ) -> None:
        self.model = model
        self.default_voice = default_voice
        self._voice_map = voice_map or {}
        self._loaded: Model | None = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parley-{self.name}")

    def voices(self) -> list[str]:
        return list(VOICES)

    @abstractmethod
    def _open(self) -> Model:
        """Read the model file (blocking)."""

    @abstractmethod
    def _piece_synthesizer(self, voice: str, speed: float) -> Callable[[str], PCM]:
        """The blocking function that speaks one piece of text with an API ``voice`` at ``speed``."""

    def load(self) -> Model:
        """Load the model (blocking; once). ``warm_up`` does it on the worker thread."""
        with self._load_lock:
            if self._loaded is None:
                started = time.perf_counter()
                try:
                    self._loaded = self._open()
                except Exception as exc:  # onnxruntime reports a bad model with its own types
                    raise EngineError(
                        f"{self.model_setting}: {self.load_failure} {self.model}: {exc}"
                    ) from exc
                logging.getLogger(f"parley.engines.tts.{self.name}").info(
                    "%s %s loaded in %.2f s", self.model_kind, self.model.name, time.perf_counter() - started
                )
            return self._loaded

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        pieces = speakable_pieces(text)
        if not pieces:
            return
        async for pcm in speak_pieces(pieces, self._executor, self._piece_synthesizer(voice, speed)):
            yield pcm

    async def warm_up(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.load)
        async for _ in self.synthesize(WARM_UP_TEXT, voice=self.default_voice):
            pass
