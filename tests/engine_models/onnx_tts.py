"""Tiny Piper and Kokoro voice files for tests and benchmarks (no downloads).

The ONNX graphs have the input and output names, dtypes and ranks of the real voices, so the
libraries' own loading, phonemization and inference code runs on them. Instead of speech they
produce a sine tone whose length follows the input (phoneme ids / tokens) and the length scale or
speed, and whose frequency tells which speaker or voice style the model received:

- Piper: ``input`` int64 [1, N], ``input_lengths`` int64 [1], ``scales`` float [3] (noise, length,
  noise_w) and, for multi-speaker voices, ``sid`` int64 [1] -> ``output`` float [1, 1, T] with
  ``T = floor(N * 256 * length_scale)`` and a tone of ``piper_tone_hz(sid)``.
- Kokoro: ``tokens`` (or ``input_ids``) int64 [1, N], ``style`` float [1, 256], ``speed`` float [1]
  -> ``audio`` float [T] with ``T = floor(N * 600 / speed)`` and a tone of
  ``kokoro_tone_hz(mean of style)``; voice ``i`` of :func:`write_kokoro_voices` has style ``i``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

PIPER_RATE = 22050
PIPER_HOP = 256
KOKORO_RATE = 24000
KOKORO_HOP = 600
KOKORO_STYLE_DIM = 256
KOKORO_STYLE_ROWS = 510
BASE_HZ = 200.0
STEP_HZ = 100.0
AMPLITUDE = 0.5
_OPSET = 17
_IR_VERSION = 8


def piper_tone_hz(speaker_id: int = 0) -> float:
    """The tone the tiny Piper graph speaks for a speaker id (0 for single-speaker voices)."""
    return BASE_HZ + STEP_HZ * speaker_id


def kokoro_tone_hz(voice_index: int) -> float:
    """The tone the tiny Kokoro graph speaks with the style of voice ``voice_index``."""
    return BASE_HZ + STEP_HZ * voice_index


def _scalar(name: str, value: float | int, dtype: int) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, [], [value]))


def _tone_nodes(length_float: str, hz: str, rate: int, output: str) -> list[onnx.NodeProto]:
    """Nodes making ``AMPLITUDE * sin(2 pi hz t / rate)`` for ``floor(length_float)`` samples."""
    return [
        helper.make_node("Floor", [length_float], ["samples_f"]),
        helper.make_node("Cast", ["samples_f"], ["samples"], to=TensorProto.INT64),
        _scalar("zero", 0, TensorProto.INT64),
        _scalar("one", 1, TensorProto.INT64),
        helper.make_node("Range", ["zero", "samples", "one"], ["t"]),
        helper.make_node("Cast", ["t"], ["t_f"], to=TensorProto.FLOAT),
        _scalar("radians_per_hz", 2 * math.pi / rate, TensorProto.FLOAT),
        helper.make_node("Mul", [hz, "radians_per_hz"], ["step"]),
        helper.make_node("Mul", ["t_f", "step"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        _scalar("amplitude", AMPLITUDE, TensorProto.FLOAT),
        helper.make_node("Mul", ["wave", "amplitude"], [output]),
    ]


def _token_count(tokens: str) -> list[onnx.NodeProto]:
    """Nodes computing ``count_f``: the length of a [1, N] input as a float scalar."""
    return [
        helper.make_node("Shape", [tokens], ["shape"]),
        _scalar("axis1", 1, TensorProto.INT64),
        helper.make_node("Gather", ["shape", "axis1"], ["count"], axis=0),
        helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
    ]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def piper_model(path: Path, *, multi_speaker: bool = False) -> Path:
    """Write the tiny Piper graph to ``path`` (with a ``sid`` input when ``multi_speaker``)."""
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    nodes = [
        *_token_count("input"),
        _scalar("scale_index", 1, TensorProto.INT64),
        helper.make_node("Gather", ["scales", "scale_index"], ["length_scale"], axis=0),
        _scalar("hop", PIPER_HOP, TensorProto.FLOAT),
        helper.make_node("Mul", ["count_f", "hop"], ["frames"]),
        helper.make_node("Mul", ["frames", "length_scale"], ["length"]),
        _scalar("base_hz", BASE_HZ, TensorProto.FLOAT),
    ]
    if multi_speaker:
        inputs.append(helper.make_tensor_value_info("sid", TensorProto.INT64, [1]))
        nodes += [
            helper.make_node("Cast", ["sid"], ["sid_f"], to=TensorProto.FLOAT),
            _scalar("step_hz", STEP_HZ, TensorProto.FLOAT),
            helper.make_node("Mul", ["sid_f", "step_hz"], ["speaker_hz"]),
            helper.make_node("Add", ["speaker_hz", "base_hz"], ["hz"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["base_hz"], ["hz"]))
    nodes += _tone_nodes("length", "hz", PIPER_RATE, "mono")
    nodes += [
        helper.make_node(
            "Constant", [], ["out_axes"], value=helper.make_tensor("a", TensorProto.INT64, [2], [0, 1])
        ),
        helper.make_node("Unsqueeze", ["mono", "out_axes"], ["output"]),
    ]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])
    return _save(helper.make_graph(nodes, "tiny_piper", inputs, [output]), path)


def piper_config(*, speakers: Sequence[str] = (), sample_rate: int = PIPER_RATE) -> dict[str, object]:
    """A Piper ``.onnx.json`` config for an English espeak voice with piper's own phoneme id map."""
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    return {
        "audio": {"sample_rate": sample_rate, "quality": "x_low"},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "num_symbols": 1 + max(i for ids in DEFAULT_PHONEME_ID_MAP.values() for i in ids),
        "num_speakers": max(1, len(speakers)),
        "speaker_id_map": {name: index for index, name in enumerate(speakers)},
        "piper_version": "1.0.0",
    }


def write_piper_voice(
    directory: Path,
    *,
    speakers: Sequence[str] = (),
    sample_rate: int = PIPER_RATE,
    name: str = "en_US-tiny-x_low",
) -> Path:
    """Write ``<name>.onnx`` and ``<name>.onnx.json`` into ``directory``; return the ``.onnx`` path.

    With several ``speakers`` the voice is multi-speaker: speaker ``i`` (``speaker_id_map``) speaks
    ``piper_tone_hz(i)``. ``sample_rate`` goes into the config only (the tone assumes 22050 Hz).
    """
    model = piper_model(directory / f"{name}.onnx", multi_speaker=len(speakers) > 1)
    config = piper_config(speakers=speakers if len(speakers) > 1 else (), sample_rate=sample_rate)
    Path(f"{model}.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return model


def write_kokoro_model(path: Path, *, tokens_input: str = "tokens") -> Path:
    """Write the tiny Kokoro graph (``tokens_input``: ``tokens`` as v1.0, or ``input_ids``)."""
    inputs = [
        helper.make_tensor_value_info(tokens_input, TensorProto.INT64, [1, "tokens"]),
        helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, KOKORO_STYLE_DIM]),
        helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
    ]
    nodes = [
        *_token_count(tokens_input),
        _scalar("hop", KOKORO_HOP, TensorProto.FLOAT),
        helper.make_node("Mul", ["count_f", "hop"], ["frames"]),
        helper.make_node("Div", ["frames", "speed"], ["length_1"]),
        helper.make_node("Squeeze", ["length_1"], ["length"]),
        helper.make_node("ReduceMean", ["style"], ["style_mean"], keepdims=0),
        _scalar("step_hz", STEP_HZ, TensorProto.FLOAT),
        _scalar("base_hz", BASE_HZ, TensorProto.FLOAT),
        helper.make_node("Mul", ["style_mean", "step_hz"], ["style_hz"]),
        helper.make_node("Add", ["style_hz", "base_hz"], ["hz"]),
        *_tone_nodes("length", "hz", KOKORO_RATE, "audio"),
    ]
    output = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["samples"])
    return _save(helper.make_graph(nodes, "tiny_kokoro", inputs, [output]), path)


def write_kokoro_voices(path: Path, names: Sequence[str]) -> Path:
    """Write a voices file as kokoro-onnx loads it (``np.load`` of an npz of [510, 1, 256] float32
    styles), under ``path``'s own name; voice ``i`` has every style value equal to ``i``."""
    styles = {
        name: np.full((KOKORO_STYLE_ROWS, 1, KOKORO_STYLE_DIM), index, dtype=np.float32)
        for index, name in enumerate(names)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:  # a file object: np.savez would append ".npz" to a name
        np.savez(file, **styles)  # type: ignore[arg-type]
    return path
