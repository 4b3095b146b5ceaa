"""What every recognition stream does alike: check the audio it is fed, and let go of a background
decode whose result nobody waits for any more."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from parley.engines.base import PCM


def mono_int16(pcm: PCM, engine: str) -> PCM:
    """``pcm`` as ``feed`` takes it (mono int16 in a numpy array), or a TypeError/ValueError."""
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError(f"{engine} expects int16 PCM in a numpy array")
    if pcm.ndim != 1:
        raise ValueError(f"{engine} expects mono PCM in a one-dimensional array")
    return pcm


def drop_result(task: asyncio.Future[Any]) -> None:
    """A done callback: retrieve the outcome, so an abandoned failure is not logged as unhandled."""
    if not task.cancelled():
        task.exception()
