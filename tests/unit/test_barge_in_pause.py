"""Server-played audio pauses while the caller's voice is judged as an interruption: a backchannel
resumes it where it paused, a barge-in cuts the item there. Driven on the session's audio clock with
fake engines; the test plays the audio out itself, as the WebRTC, SIP and Twilio transports do."""

from __future__ import annotations

import base64

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM
from parley.realtime.playback import MAX_PAUSE_MS, Playback
from tests.fakes import FakeLLM, FakeSTT, FakeVAD, Recorder, text_reply

RATE = 24000
FRAME = 480  # 20 ms, as the transports read
REPLY = (
    "Once upon a time there was a lighthouse keeper who counted every ship that passed by. "
    "He wrote each one down in a big blue book, with the weather and the hour. "
    "One stormy night a ship he had never seen came out of the fog and sailed straight for the rocks."
)
"""About 2.6 s of the fake synthesiser's tone (10 ms a character)."""


def _tone(ms: int, amplitude: int = 8000) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * 300 * t) * amplitude).astype("<i2").tobytes()


class _NoisyVAD(FakeVAD):
    """Loud frames are speech; quieter ones score between the two thresholds, as steady noise can."""

    def speech_probability(self, frame: PCM) -> float:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        return 1.0 if rms > 3000 else 0.4 if rms > 500 else 0.0


def _silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


class _Call:
    """A session whose audio the server plays, with the caller's microphone and the line's
    loudspeaker advancing together, 20 ms at a time."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        assert rec.session.playback is not None
        self.playback: Playback = rec.session.playback
        self.heard: list[np.ndarray] = []

    async def say(self, audio: bytes) -> None:
        step = FRAME * 2
        for i in range(0, len(audio), step):
            chunk = audio[i : i + step]
            audio_b64 = base64.b64encode(chunk).decode()
            await self.rec.send({"type": "input_audio_buffer.append", "audio": audio_b64})
            self.heard.append(self.playback.read(len(chunk) // 2))

    def audible_ms(self, since: int = 0) -> int:
        """How many ms of the frames played since frame ``since`` carried the assistant's voice."""
        return sum(20 for frame in self.heard[since:] if np.abs(frame).max() > 0)


async def _reply_playing(
    transcripts: list[str], settings: Settings | None = None, vad: type[FakeVAD] = FakeVAD
) -> _Call:
    """The caller asks (800 ms of voice), the reply is made and starts playing."""
    rec = Recorder(
        settings=settings,
        playback_rate=RATE,
        stt=FakeSTT(transcripts=transcripts),
        llm=FakeLLM(replies=[text_reply(REPLY * 2)]),
        vad=vad,
    )
    await rec.session.start()
    call = _Call(rec)
    await call.say(_silence(300) + _tone(800) + _silence(700))
    await rec.wait_for("response.done")
    await call.say(_silence(400))
    assert call.audible_ms() > 0, "the reply is playing"
    return call


async def test_a_backchannel_pauses_the_reply_which_then_resumes_where_it_paused() -> None:
    call = await _reply_playing(["tell me a story", "yeah"])
    played = call.playback.buffer.played_samples
    mark = len(call.heard)
    await call.say(_tone(600))
    assert call.playback.paused, "the caller's voice is being judged"
    paused_at = call.playback.buffer.played_samples
    # Within the VAD's minimum speech (200 ms) and its frame, the reply goes on; then it holds.
    assert 0 < (paused_at - played) * 1000 / RATE <= 300
    assert call.audible_ms(mark) <= 300
    await call.say(_silence(700))  # the caller stops; "yeah" is discarded some 450 ms later
    assert not call.playback.paused
    assert call.rec.types().count("input_audio_buffer.speech_started") == 1, "only the question's"
    held_ms = len(call.heard[mark:]) * 20 - call.audible_ms(mark)
    assert held_ms >= 600, "silent from the pause until the judgement"
    resumed, at = len(call.heard), call.playback.buffer.played_samples
    assert at > paused_at, "resumed"
    await call.say(_silence(500))
    assert call.audible_ms(resumed) == 500, "the reply goes on"
    assert call.playback.buffer.played_samples == at + 500 * RATE // 1000
    assert "output_audio_buffer.cleared" not in call.rec.types()
    await call.rec.session.close()


async def test_a_barge_in_cuts_the_reply_where_it_paused() -> None:
    call = await _reply_playing(["tell me a story", "wait stop"])
    await call.say(_tone(300))
    assert call.playback.paused
    paused_ms = call.playback.buffer.played_samples * 1000 / RATE
    await call.say(_tone(600) + _silence(700))
    truncated = await call.rec.wait_for("conversation.item.truncated")
    assert "output_audio_buffer.cleared" in call.rec.types()
    assert truncated["audio_end_ms"] == round(paused_ms), "cut where it paused, not when confirmed"
    await call.rec.session.close()


async def test_the_pause_can_be_turned_off() -> None:
    call = await _reply_playing(["tell me a story", "yeah"], Settings(barge_in_pause=False))
    mark = len(call.heard)
    await call.say(_tone(600))
    assert not call.playback.paused
    assert call.audible_ms(mark) == 600
    await call.rec.session.close()


async def test_voice_held_open_by_noise_does_not_silence_the_assistant_for_good() -> None:
    call = await _reply_playing(["tell me a story", "yeah"], vad=_NoisyVAD)
    await call.say(_tone(300))  # too short to be confirmed; then noise keeps the voice open
    assert call.playback.paused
    mark = len(call.heard)
    await call.say(_tone(3000, amplitude=1500))
    assert call.rec.session.audio.judging_interruption, "still judged"
    assert not call.playback.paused
    assert 2800 - MAX_PAUSE_MS <= call.audible_ms(mark) <= 3000 - MAX_PAUSE_MS + 300
    await call.rec.session.close()


async def test_a_pause_ends_when_the_callers_audio_stops_arriving_mid_judgement() -> None:
    call = await _reply_playing(["tell me a story", "yeah"])
    await call.say(_tone(300))
    assert call.playback.paused
    # The line goes quiet (no input at all): the loudspeaker goes on alone, 20 ms at a time.
    played = [call.playback.read(FRAME) for _ in range(125)]  # 2.5 s
    voiced = [bool(np.abs(frame).max() > 0) for frame in played]
    assert call.rec.session.audio.judging_interruption, "nothing decided: no audio came"
    assert not any(voiced[: int(MAX_PAUSE_MS / 20) - 20]) and all(voiced[-20:]), "resumed after the cap"
    await call.rec.session.close()
