"""The piper and kokoro TTS engines on tiny voice files built by the tests.

The libraries' real loading, espeak-ng phonemization and onnxruntime inference run; the tiny graphs
speak a tone whose length follows the input and speed and whose pitch tells the speaker or style.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, EngineError, MissingDependencyError, TextToSpeech
from parley.protocol.session_config import VOICES

pytest.importorskip("piper")
pytest.importorskip("kokoro_onnx")

from parley.engines.tts import kokoro, piper
from parley.engines.tts.kokoro import KokoroTTS
from parley.engines.tts.piper import PiperTTS
from tests.engine_models import onnx_tts

THREE_SENTENCES = "Hello there. How are you today? I am fine, thank you."
SPEAKERS = [f"speaker_{i}" for i in range(12)]
KOKORO_VOICES = ["af_heart", "af_alloy", "am_echo", "bm_george", "zz_custom"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx_tts")
    return {
        "piper": onnx_tts.write_piper_voice(root / "single"),
        "piper_multi": onnx_tts.write_piper_voice(root / "multi", speakers=SPEAKERS),
        "piper_three": onnx_tts.write_piper_voice(root / "three", speakers=["a", "b", "c"]),
        "kokoro": onnx_tts.write_kokoro_model(root / "kokoro-v1.0.onnx"),
        "kokoro_ids": onnx_tts.write_kokoro_model(root / "kokoro-ids.onnx", tokens_input="input_ids"),
        "voices": onnx_tts.write_kokoro_voices(root / "voices-v1.0.bin", KOKORO_VOICES),
    }


def piper_engine(models: dict[str, Path], key: str = "piper", **settings: Any) -> PiperTTS:
    return piper.create(Settings(tts_piper_voice=models[key], **settings))


def kokoro_engine(models: dict[str, Path], model: str = "kokoro", **settings: Any) -> KokoroTTS:
    return kokoro.create(
        Settings(tts_kokoro_model=models[model], tts_kokoro_voices=models["voices"], **settings)
    )


async def speak(engine: TextToSpeech, text: str, voice: str = "marin", speed: float = 1.0) -> list[PCM]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice, speed=speed)]


def dominant_hz(pcm: PCM, rate: int) -> float:
    voiced = pcm[: np.flatnonzero(pcm)[-1] + 1].astype(np.float64)  # without a trailing pause
    spectrum = np.abs(np.fft.rfft(voiced))
    return float(np.argmax(spectrum) * rate / voiced.size)


def voiced_samples(chunks: list[PCM]) -> int:
    """Samples up to the last non-zero one of each chunk (kokoro adds a silent pause)."""
    return sum(int(np.flatnonzero(c)[-1]) + 1 for c in chunks)


def broken_model(directory: Path, config_of: Path | None = None) -> Path:
    """A model file that is not ONNX (with a copy of ``config_of``'s piper config beside it)."""
    broken = directory / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    if config_of is not None:
        Path(f"{broken}.json").write_text(Path(f"{config_of}.json").read_text())
    return broken


def count_runs(monkeypatch: pytest.MonkeyPatch, session: Any) -> list[int]:
    """Count ``session.run`` calls (the model inferences); returns a one-item counter."""
    runs = [0]
    real_run: Callable[..., Any] = session.run

    def run(*args: Any, **kwargs: Any) -> Any:
        runs[0] += 1
        return real_run(*args, **kwargs)

    monkeypatch.setattr(session, "run", run)
    return runs


async def assert_streams_sentence_by_sentence(
    engine: TextToSpeech, session: Any, monkeypatch: pytest.MonkeyPatch, voice: str
) -> None:
    """Three sentences come out as three chunks, one inference each (``session`` is the engine's
    onnxruntime session), and the first is heard before the rest is synthesized."""
    runs = count_runs(monkeypatch, session)
    stream = engine.synthesize(THREE_SENTENCES, voice=voice)
    first = await anext(stream)
    assert first.size and runs[0] == 1  # heard before the rest is synthesized
    rest = [chunk async for chunk in stream]
    assert len(rest) == 2 and runs[0] == 3


# --------------------------------------------------------------------------------------------------
# piper


def test_piper_engine_shape_and_factory(models: dict[str, Path], tmp_path: Path) -> None:
    engine = piper_engine(models)
    assert isinstance(engine, TextToSpeech)
    assert (engine.name, engine.sample_rate, engine.voices()) == ("piper", 22050, list(VOICES))
    assert isinstance(registry.create("tts", "piper", Settings(tts_piper_voice=models["piper"])), PiperTTS)
    assert PiperTTS(onnx_tts.write_piper_voice(tmp_path, sample_rate=16000)).sample_rate == 16000


def test_piper_configuration_errors_name_the_setting_and_file(
    models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(EngineError, match="PARLEY_TTS_PIPER_VOICE"):
        piper.create(Settings())
    missing = tmp_path / "nope.onnx"
    with pytest.raises(EngineError, match="PARLEY_TTS_PIPER_VOICE") as raised:
        piper_engine({"piper": missing})
    assert str(missing) in str(raised.value)
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(models["piper"].read_bytes())
    with pytest.raises(EngineError, match=r"lonely\.onnx\.json"):
        piper_engine({"piper": lonely})
    Path(f"{lonely}.json").write_text(json.dumps({"audio": {}}))
    with pytest.raises(EngineError, match="not a piper voice config"):
        piper_engine({"piper": lonely})


async def test_piper_bad_model_fails_clearly_on_warm_up(models: dict[str, Path], tmp_path: Path) -> None:
    engine = piper_engine({"piper": broken_model(tmp_path, config_of=models["piper"])})
    with pytest.raises(EngineError, match=r"could not load the piper voice .*broken\.onnx"):
        await engine.warm_up()


async def test_piper_speaks_at_the_voice_rate(models: dict[str, Path]) -> None:
    engine = piper_engine(models)
    await engine.warm_up()
    await engine.warm_up()  # idempotent
    chunks = await speak(engine, "The quick brown fox jumps over the lazy dog.")
    assert len(chunks) == 1 and chunks[0].dtype == np.int16
    assert np.sqrt(np.mean(chunks[0].astype(np.float64) ** 2)) > 10000  # piper peak-normalises
    assert dominant_hz(chunks[0], engine.sample_rate) == pytest.approx(onnx_tts.piper_tone_hz(0), abs=3)
    assert await speak(engine, " \n ... ") == []


async def test_piper_streams_sentence_by_sentence(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = piper_engine(models)
    await assert_streams_sentence_by_sentence(engine, engine.load().session, monkeypatch, voice="alloy")


async def test_piper_stops_when_the_caller_stops(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = piper_engine(models)
    runs = count_runs(monkeypatch, engine.load().session)
    stream = cast(AsyncGenerator[PCM, None], engine.synthesize(THREE_SENTENCES, voice="alloy"))
    await anext(stream)
    await stream.aclose()
    await speak(engine, "Next.")  # queued behind anything the first request left running
    assert runs[0] == 2


async def test_piper_speed_and_text_length_change_duration(models: dict[str, Path]) -> None:
    engine = piper_engine(models)
    text = "The quick brown fox jumps over the lazy dog."
    normal = sum(c.size for c in await speak(engine, text))
    slow = sum(c.size for c in await speak(engine, text, speed=0.5))
    fast = sum(c.size for c in await speak(engine, text, speed=1.5))
    assert slow == pytest.approx(2 * normal, rel=0.01)
    assert fast == pytest.approx(normal / 1.5, rel=0.01)
    assert sum(c.size for c in await speak(engine, f"{text} {text}")) > 1.9 * normal
    assert piper.length_scale(1.0, float("nan")) == 1.0
    assert piper.length_scale(1.0, 100) == 1 / piper.MAX_SPEED


async def test_piper_spreads_api_voices_over_speakers(models: dict[str, Path]) -> None:
    engine = piper_engine(models, "piper_multi")
    ids = [engine.speaker_id(v) for v in VOICES]
    assert len(set(ids)) == len(VOICES) and ids[0] == 0 and ids[-1] == 10
    for voice in ("echo", "cedar"):
        chunks = await speak(engine, "Hello world.", voice=voice)
        expected = onnx_tts.piper_tone_hz(engine.speaker_id(voice) or 0)
        assert dominant_hz(chunks[0], engine.sample_rate) == pytest.approx(expected, abs=3)
    three = piper_engine(models, "piper_three")
    assert [three.speaker_id(v) for v in VOICES] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_piper_voice_map_default_and_unknown_voices(models: dict[str, Path]) -> None:
    mapped = piper_engine(models, "piper_multi", tts_voice_map={"piper": {"alloy": "speaker_7", "ash": "3"}})
    assert (mapped.speaker_id("alloy"), mapped.speaker_id("ash")) == (7, 3)
    engine = piper_engine(models, "piper_multi")
    assert engine.speaker_id("{'id': 'voice_123'}") == engine.speaker_id("marin")
    assert engine.speaker_id("speaker_5") == 5  # a speaker's own name
    cedar = piper_engine(models, "piper_multi", voice="cedar")
    assert cedar.speaker_id("nope") == cedar.speaker_id("cedar") != engine.speaker_id("nope")
    bad = piper_engine(models, "piper_multi", tts_voice_map={"piper": {"alloy": "nobody"}})
    with pytest.raises(EngineError, match="nobody"):
        bad.speaker_id("alloy")
    with pytest.raises(EngineError, match="nobody"):
        piper_engine(models, "piper_multi", tts_voice_map={"piper": {"marin": "nobody"}})
    single = piper_engine(models, tts_voice_map={"piper": {"marin": "nobody"}})
    assert {single.speaker_id(v) for v in [*VOICES, "nope"]} == {None}


# --------------------------------------------------------------------------------------------------
# kokoro


def test_kokoro_engine_shape_and_factory(models: dict[str, Path]) -> None:
    engine = kokoro_engine(models)
    assert isinstance(engine, TextToSpeech)
    assert (engine.name, engine.sample_rate, engine.voices()) == ("kokoro", 24000, list(VOICES))
    assert engine.available == sorted(KOKORO_VOICES)
    settings = Settings(tts_kokoro_model=models["kokoro"], tts_kokoro_voices=models["voices"])
    assert isinstance(registry.create("tts", "kokoro", settings), KokoroTTS)


def test_kokoro_configuration_errors_name_the_setting_and_file(
    models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(EngineError, match="PARLEY_TTS_KOKORO_MODEL"):
        kokoro.create(Settings(tts_kokoro_voices=models["voices"]))
    with pytest.raises(EngineError, match="PARLEY_TTS_KOKORO_VOICES"):
        kokoro.create(Settings(tts_kokoro_model=models["kokoro"]))
    missing = tmp_path / "missing.onnx"
    with pytest.raises(EngineError, match="PARLEY_TTS_KOKORO_MODEL") as raised:
        kokoro.create(Settings(tts_kokoro_model=missing, tts_kokoro_voices=models["voices"]))
    assert str(missing) in str(raised.value)
    not_voices = tmp_path / "voices.bin"
    with not_voices.open("wb") as file:
        np.save(file, np.zeros(3, np.float32))
    with pytest.raises(EngineError, match=r"PARLEY_TTS_KOKORO_VOICES.*not a kokoro voices file"):
        kokoro.create(Settings(tts_kokoro_model=models["kokoro"], tts_kokoro_voices=not_voices))
    with pytest.raises(EngineError, match="nobody"):
        kokoro_engine(models, tts_voice_map={"kokoro": {"marin": "nobody"}})


async def test_kokoro_speaks_at_24_khz_with_a_pause_after_each_piece(models: dict[str, Path]) -> None:
    engine = kokoro_engine(models)
    await engine.warm_up()
    await engine.warm_up()  # idempotent
    chunks = await speak(engine, "The quick brown fox jumps over the lazy dog.")
    assert len(chunks) == 1 and chunks[0].dtype == np.int16
    audio = chunks[0]
    pause = round(kokoro.SENTENCE_PAUSE_S * 24000)
    assert not audio[-pause:].any() and np.abs(audio[:-pause]).max() > 15000
    assert dominant_hz(audio, 24000) == pytest.approx(onnx_tts.kokoro_tone_hz(0), abs=3)  # af_heart
    clause = (await speak(engine, "Well, then,"))[0]
    assert not clause[-round(kokoro.CLAUSE_PAUSE_S * 24000) :].any() and clause[-pause:].any()
    assert await speak(engine, "... !") == []


async def test_kokoro_streams_sentence_by_sentence(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = kokoro_engine(models)
    await assert_streams_sentence_by_sentence(engine, engine.load().sess, monkeypatch, voice="echo")


async def test_kokoro_speed_and_text_length_change_duration(models: dict[str, Path]) -> None:
    engine = kokoro_engine(models)
    text = "The quick brown fox jumps over the lazy dog."
    normal = voiced_samples(await speak(engine, text))
    slow = voiced_samples(await speak(engine, text, speed=0.5))
    assert slow == pytest.approx(2 * normal, rel=0.01)
    assert voiced_samples(await speak(engine, text, speed=1.5)) == pytest.approx(normal / 1.5, rel=0.01)
    assert voiced_samples(await speak(engine, text, speed=0.25)) == slow  # kokoro's floor is 0.5
    assert voiced_samples(await speak(engine, f"{text} {text}")) > 1.9 * normal
    assert (kokoro.clamp_speed(float("inf")), kokoro.clamp_speed(3.0)) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("voice", "settings", "expected"),
    [
        ("marin", {}, "af_heart"),
        ("echo", {}, "am_echo"),
        ("ballad", {}, "bm_george"),
        ("alloy", {}, "af_alloy"),
        ("ash", {}, "af_heart"),  # am_fenrir is not in this voices file: the default voice
        ("{'id': 'voice_123'}", {}, "af_heart"),
        ("nope", {"voice": "echo"}, "am_echo"),
        ("zz_custom", {}, "zz_custom"),  # a Kokoro voice named directly
        ("alloy", {"tts_voice_map": {"kokoro": {"alloy": "zz_custom"}}}, "zz_custom"),
    ],
)
async def test_kokoro_voice_mapping_reaches_the_model(
    models: dict[str, Path], voice: str, settings: dict[str, Any], expected: str
) -> None:
    engine = kokoro_engine(models, **settings)
    assert engine.kokoro_voice(voice) == expected
    chunks = await speak(engine, "Hello world.", voice=voice)
    tone = onnx_tts.kokoro_tone_hz(KOKORO_VOICES.index(expected))
    assert dominant_hz(chunks[0], 24000) == pytest.approx(tone, abs=3)


async def test_kokoro_newer_exports_with_input_ids(models: dict[str, Path]) -> None:
    engine = kokoro_engine(models, model="kokoro_ids")
    chunks = await speak(engine, THREE_SENTENCES, voice="echo")
    assert len(chunks) == 3 and all(np.abs(c).max() > 15000 for c in chunks)


def test_kokoro_language_follows_the_voice_name() -> None:
    assert [kokoro.language(v) for v in ("af_heart", "bm_george", "ef_dora", "xx_new")] == [
        "en-us",
        "en-gb",
        "es",
        "en-us",
    ]
    assert set(kokoro.VOICE_MAP) == set(VOICES) and len(set(kokoro.VOICE_MAP.values())) == len(VOICES)


async def test_kokoro_bad_model_fails_clearly_on_warm_up(models: dict[str, Path], tmp_path: Path) -> None:
    broken = broken_model(tmp_path)
    engine = kokoro.create(Settings(tts_kokoro_model=broken, tts_kokoro_voices=models["voices"]))
    with pytest.raises(EngineError, match=r"could not load kokoro from .*broken\.onnx"):
        await engine.warm_up()


@pytest.mark.parametrize(("module", "engine"), [("piper", piper), ("kokoro_onnx", kokoro)])
def test_missing_library_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, module: str, engine: Any
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'parley\[{engine.NAME}\]'"):
        engine.create(Settings())
