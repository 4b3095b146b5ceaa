"""Stimuli for the turn-taking benchmark (``bench/turn_taking.py``): deterministic, seeded, 24 kHz mono.

Three sets, each a list of :class:`Stimulus` (a clean clip with its ground truth):

* :func:`paused_utterances`: user turns with pauses *inside* them where the sentence is clearly
  unfinished ("my number is five five five" + pause + "one two three four"), made of flite pieces
  joined by 600-1500 ms of silence, and whole questions with no inner pause. 500 ms before the
  speech, 4 s after it.
* :func:`non_speech_sounds`: what must not barge in: synthetic coughs, clicks and knocks, noise
  bursts, door-slam thumps, and short flite backchannels ("um hum", "uh huh", "yeah"...).
* :func:`barge_in_utterances`: real interruptions of at least 0.5 s of speech ("wait please",
  "hold on a second"...).

Barge-in clips have 300 ms before the sound and 1.5 s after it. The ground truth comes from the clean
pieces: a piece's speech is the span of its 5 ms frames whose RMS is within 35 dB of its loudest frame
(and above an absolute floor under flite's own noise floor); each piece is cut to that span plus 10 ms
with 5 ms fades, so the pause between two pieces is exactly the silence chosen and ``end_ms`` is the
end of the last frame with energy in the last piece.

:meth:`Stimulus.at_snr` adds a noise bed to the whole clip (silences included) at a signal-to-noise
ratio measured against the stimulus's *active* level (the RMS of its frames above the threshold, not
diluted by the silences): half white noise, half a babble-like noise (pink noise with a speech-like
spectral tilt, amplitude-modulated at syllable rates). Everything is seeded, so runs repeat.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import flite_speech

RATE = 24000
PCM = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]

VOICES = ("rms", "slt", "kal", "awb")
FRAME_MS = 5
ACTIVE_DB = 35.0
"""A frame is active when its RMS is within this many dB of the loudest frame of its piece."""
ACTIVE_FLOOR = 60.0
"""...and above this absolute RMS (about -55 dBFS), over the noise floor of the kal and awb voices."""
MARGIN_MS = 10
FADE_MS = 5
MIN_BARGE_IN_MS = 500

EOT_LEAD_MS = 500
EOT_TAIL_MS = 4000
BARGE_LEAD_MS = 300
BARGE_TAIL_MS = 1500
WARM_UP_TAIL_MS = 800
WARM_UP = "hello could you help me plan a trip"


@dataclass(frozen=True)
class Stimulus:
    name: str
    kind: str
    """``paused`` / ``whole`` (end of turn), ``cough`` / ``click`` / ``burst`` / ``thump`` /
    ``backchannel`` (must not barge in), ``barge_in`` (must)."""
    text: str
    voice: str
    pcm: PCM
    """The whole clip at 24 kHz: lead, the sound, tail."""
    onset_ms: float
    """Where the sound starts in the clip."""
    end_ms: float
    """Where it ends: the end of the last frame with energy."""
    pauses: tuple[tuple[float, float], ...] = ()
    """Silences inside the utterance, (start, end) in clip ms."""
    active_rms: float = 0.0
    """RMS of the sound's active frames (the level SNRs refer to)."""
    snr_db: float | None = None
    """None: clean."""
    noise_rms: float = 0.0
    noise_seed: int = 0

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) * 1000 / RATE

    @property
    def speech_ms(self) -> float:
        """The sound's span, inner pauses included."""
        return self.end_ms - self.onset_ms

    def at_snr(self, snr_db: float | None) -> Stimulus:
        """This clip with the noise bed at ``snr_db`` (None: unchanged, clean)."""
        if snr_db is None:
            return self
        seed = zlib.crc32(f"{self.name}|{snr_db}".encode())
        noise_rms = self.active_rms / 10 ** (snr_db / 20)
        mixed = self.pcm.astype(np.float64) + noise_bed(len(self.pcm), seed) * noise_rms
        pcm = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
        return replace(self, pcm=pcm, snr_db=snr_db, noise_rms=noise_rms, noise_seed=seed)

    def background(self, ms: float, part: int = 1) -> PCM:
        """``ms`` more of this clip's background (silence when clean), to continue it seamlessly."""
        samples = round(RATE * ms / 1000)
        if self.noise_rms == 0.0:
            return np.zeros(samples, dtype=np.int16)
        bed = noise_bed(samples, self.noise_seed + part) * self.noise_rms
        return np.clip(np.round(bed), -32768, 32767).astype(np.int16)


# -------------------------------------------------------------------------------------- analysis


def _frame_rms(x: Floats) -> Floats:
    size = RATE * FRAME_MS // 1000
    frames = len(x) // size
    if frames == 0:
        return np.zeros(0)
    return np.asarray(np.sqrt(np.mean(np.square(x[: frames * size].reshape(frames, size)), axis=1)))


def active_frames(pcm: PCM | Floats) -> npt.NDArray[np.bool_]:
    rms = _frame_rms(np.asarray(pcm, dtype=np.float64))
    if not len(rms):
        return np.zeros(0, dtype=bool)
    threshold = max(float(rms.max()) * 10 ** (-ACTIVE_DB / 20), ACTIVE_FLOOR)
    return np.asarray(rms > threshold)


def _span(active: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """First and one-past-last active frame."""
    index = np.nonzero(active)[0]
    if not len(index):
        raise ValueError("no active frame: the sound is silent")
    return int(index[0]), int(index[-1]) + 1


def _fade(x: Floats, ms: float = FADE_MS) -> Floats:
    n = min(round(RATE * ms / 1000), len(x) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


@dataclass(frozen=True)
class Piece:
    """A sound cut to its active span plus MARGIN_MS each side (faded)."""

    samples: Floats
    active_ms: float
    """Length of the active span."""
    sum_sq: float
    """Sum of squares over the active frames (for the active level)."""
    active_count: int
    """Samples in active frames."""


def cut(pcm: PCM | Floats) -> Piece:
    x = np.asarray(pcm, dtype=np.float64)
    active = active_frames(x)
    first, last = _span(active)
    size = RATE * FRAME_MS // 1000
    margin = RATE * MARGIN_MS // 1000
    start, stop = first * size, last * size
    padded = np.concatenate((np.zeros(margin), x, np.zeros(margin)))
    samples = _fade(padded[start : stop + 2 * margin])
    frames = x[: len(active) * size].reshape(len(active), size)[active]
    return Piece(samples, (stop - start) * 1000 / RATE, float(np.sum(np.square(frames))), frames.size)


def assemble(
    name: str,
    kind: str,
    text: str,
    voice: str,
    pieces: list[Piece],
    gaps_ms: list[float],
    lead_ms: float,
    tail_ms: float,
) -> Stimulus:
    """Pieces with exactly ``gaps_ms`` of silence between their active spans, lead and tail around."""
    assert len(gaps_ms) == len(pieces) - 1
    margin = RATE * MARGIN_MS // 1000
    parts: list[Floats] = [np.zeros(round(RATE * lead_ms / 1000) - margin)]
    pauses: list[tuple[float, float]] = []
    at = lead_ms
    for i, piece in enumerate(pieces):
        parts.append(piece.samples)
        at += piece.active_ms
        if i < len(gaps_ms):
            parts.append(np.zeros(round(RATE * gaps_ms[i] / 1000) - 2 * margin))
            pauses.append((at, at + gaps_ms[i]))
            at += gaps_ms[i]
    parts.append(np.zeros(round(RATE * tail_ms / 1000) - margin))
    clip = np.clip(np.round(np.concatenate(parts)), -32768, 32767).astype(np.int16)
    clip.flags.writeable = False
    level = float(np.sqrt(sum(p.sum_sq for p in pieces) / sum(p.active_count for p in pieces)))
    return Stimulus(name, kind, text, voice, clip, lead_ms, at, tuple(pauses), active_rms=level)


# -------------------------------------------------------------------------------------- noise


def _shaped_noise(n: int, rng: np.random.Generator, tilt: float, low_hz: float, high_hz: float) -> Floats:
    """Gaussian noise with a power spectrum falling as f**-tilt between low_hz and high_hz."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    gain = np.zeros_like(freqs)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    gain[band] = freqs[band] ** (-tilt / 2)
    out = np.fft.irfft(spectrum * gain, n)
    return np.asarray(out / (np.sqrt(np.mean(np.square(out))) or 1.0))


def noise_bed(n: int, seed: int) -> Floats:
    """Unit-RMS background: half white, half babble-like (pink, tilted, syllable-rate modulated)."""
    if n == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    white /= np.sqrt(np.mean(np.square(white)))
    babble = _shaped_noise(n, rng, 1.0, 100.0, 4000.0) + 0.5 * _shaped_noise(n, rng, 2.0, 150.0, 1000.0)
    t = np.arange(n) / RATE
    envelope = np.ones(n)
    for _ in range(4):
        envelope += 0.15 * np.sin(2 * np.pi * rng.uniform(2.0, 7.0) * t + rng.uniform(0, 2 * np.pi))
    babble *= np.clip(envelope, 0.2, None)
    babble /= np.sqrt(np.mean(np.square(babble)))
    return np.asarray((white + babble) / np.sqrt(2.0))


# -------------------------------------------------------------------------------------- speech

PAUSED: tuple[tuple[str, ...], ...] = (
    ("my number is five five five", "one two three four"),
    ("I would like to book a table for", "four people tonight"),
    ("my email is john", "at example dot com"),
    ("the order number is", "seven eight two"),
    ("can you send it to", "my office address"),
    ("I want to fly from boston to", "san francisco on friday"),
    ("the meeting is on", "thursday at three"),
    ("please remind me to", "call my mother"),
    ("my date of birth is march", "the fourth nineteen eighty"),
    ("I need a taxi to", "the central station"),
    ("the password is", "blue river seven"),
    ("set an alarm for", "six thirty in the morning"),
    ("my zip code is nine four", "one one zero"),
    ("I am looking for a", "cheap hotel near the beach"),
    ("could you tell me the", "opening hours of the museum"),
    ("my account number is four four", "eight two six"),
    ("I would like to order a", "large pepperoni pizza"),
    ("the name on the card is", "peter anderson"),
    ("add milk eggs and", "some bread to my list"),
    ("the problem is that my", "internet keeps dropping"),
    ("send a message to", "sarah saying I am late"),
    ("I was wondering if", "you could help me with my bill"),
    ("my flight leaves at", "ten fifteen tomorrow"),
    ("the address is twenty two", "baker street"),
    ("I want to change my", "delivery address"),
    ("can you play some", "relaxing music"),
    ("the total comes to", "forty two dollars"),
    ("I think the best option is", "the second one"),
    ("my license plate is", "k seven three"),
    ("please transfer money to", "my savings account"),
    ("the reference code is alpha", "bravo nine"),
    ("we will arrive on the", "twelfth of june"),
    ("my phone is a", "samsung galaxy"),
    ("tell my boss that", "I will be there at noon"),
    ("I need to cancel my", "appointment on monday"),
    ("the first thing I want is", "a glass of water"),
    ("my number is five five five", "one two", "three four"),
    ("my card number is four one", "two three", "nine nine"),
    ("I would like a", "coffee with", "oat milk"),
    ("the code is seven", "four one", "eight six"),
    ("I want to go to", "the airport and then", "downtown"),
    ("book me a room for", "two nights starting", "on friday"),
)
WHOLE: tuple[str, ...] = (
    "what time do you open tomorrow",
    "how is the weather today",
    "can you recommend a good restaurant",
    "what is the capital of france",
    "please turn off the lights in the kitchen",
    "how much does the blue one cost",
    "where is the nearest pharmacy",
    "thank you that is all for today",
    "what is my account balance",
    "can you read me the news",
)
BARGE_IN: tuple[str, ...] = (
    "wait",
    "stop please",
    "hold on a second",
    "no that is wrong",
    "actually I meant tuesday",
    "can you repeat that",
    "sorry what did you say",
    "excuse me",
    "hang on",
    "no no stop",
    "let me ask something",
)
BACKCHANNELS: tuple[str, ...] = ("um hum", "uh huh", "yeah", "okay", "right", "yes")
"""flite spells "mhm", "mm hmm" and "hmm" out as letters ("em aitch em"); "um hum" it hums (AA M HH AA M)."""


def paused_utterances(seed: int = 0) -> list[Stimulus]:
    """42 turns with 1-2 pauses of 600-1500 ms where the sentence is unfinished, then 10 without."""
    rng = np.random.default_rng(seed)
    out: list[Stimulus] = []
    for i, texts in enumerate(PAUSED):
        voice = VOICES[i % len(VOICES)]
        pieces = [cut(flite_speech(text, RATE, voice)) for text in texts]
        gaps = [float(round(rng.uniform(600, 1500), -1)) for _ in texts[1:]]
        name = f"paused/{i:02d}"
        text = " | ".join(texts)
        out.append(assemble(name, "paused", text, voice, pieces, gaps, EOT_LEAD_MS, EOT_TAIL_MS))
    for i, text in enumerate(WHOLE):
        voice = VOICES[(i + 1) % len(VOICES)]
        piece = cut(flite_speech(text, RATE, voice))
        out.append(assemble(f"whole/{i:02d}", "whole", text, voice, [piece], [], EOT_LEAD_MS, EOT_TAIL_MS))
    return out


def barge_in_utterances() -> list[Stimulus]:
    """Each phrase in each voice (44), lengthened with "please" when flite speaks it in under 0.5 s."""
    out: list[Stimulus] = []
    for i, phrase in enumerate(BARGE_IN):
        for voice in VOICES:
            text = phrase
            piece = cut(flite_speech(text, RATE, voice))
            if piece.active_ms < MIN_BARGE_IN_MS:
                text = f"{phrase} please"
                piece = cut(flite_speech(text, RATE, voice))
            if piece.active_ms < MIN_BARGE_IN_MS:
                raise RuntimeError(f"barge-in {text!r} ({voice}) is only {piece.active_ms:.0f} ms long")
            name = f"barge_in/{i:02d}-{voice}"
            out.append(assemble(name, "barge_in", text, voice, [piece], [], BARGE_LEAD_MS, BARGE_TAIL_MS))
    return out


def warm_up_turn(voice: str) -> Stimulus:
    """The user's turn before a barge-in: a request, then silence enough to end it (server_vad)."""
    piece = cut(flite_speech(WARM_UP, RATE, voice))
    name = f"warm_up/{voice}"
    return assemble(name, "warm_up", WARM_UP, voice, [piece], [], BARGE_LEAD_MS, WARM_UP_TAIL_MS)


def voice_for(stimulus: Stimulus) -> str:
    """The stimulus's voice, or for a sound with none a voice picked from its name (stable)."""
    return stimulus.voice or VOICES[zlib.crc32(stimulus.name.encode()) % len(VOICES)]


# -------------------------------------------------------------------------------------- non-speech


def _band_noise(n: int, rng: np.random.Generator, low: float, high: float) -> Floats:
    return _shaped_noise(n, rng, 0.0, low, high)


def _cough(rng: np.random.Generator) -> Floats:
    bursts: list[Floats] = []
    for b in range(int(rng.integers(1, 3))):
        dur = rng.uniform(0.15, 0.4)
        n = round(RATE * dur)
        t = np.arange(n) / RATE
        attack = rng.uniform(0.008, 0.02)
        envelope = np.minimum(t / attack, 1.0) * np.exp(-np.maximum(t - attack, 0) / (dur / 4))
        sound = _band_noise(n, rng, rng.uniform(200, 500), rng.uniform(2000, 4500))
        sound += 0.4 * np.sin(2 * np.pi * rng.uniform(250, 450) * t) * (envelope > 0.3)  # a little voicing
        level = rng.uniform(0.25, 0.55) * 32767 * (0.7 if b else 1.0)
        bursts.append(_fade(sound / np.max(np.abs(sound)) * envelope * level, 3))
        bursts.append(np.zeros(round(RATE * rng.uniform(0.08, 0.2))))
    return np.concatenate(bursts[:-1])


def _clicks(rng: np.random.Generator, knock: bool) -> Floats:
    parts: list[Floats] = []
    for _ in range(int(rng.integers(2, 6))):
        n = round(RATE * 0.06)
        t = np.arange(n) / RATE
        freq = rng.uniform(150, 400) if knock else rng.uniform(800, 3000)
        decay = rng.uniform(0.008, 0.02) if knock else rng.uniform(0.002, 0.006)
        tick = np.sin(2 * np.pi * freq * t) * np.exp(-t / decay)
        tick[: round(RATE * 0.002)] += rng.standard_normal(round(RATE * 0.002)) * 0.5
        parts.append(tick / np.max(np.abs(tick)) * rng.uniform(0.3, 0.8) * 32767)
        parts.append(np.zeros(round(RATE * rng.uniform(0.12, 0.3))))
    return np.concatenate(parts[:-1])


def _burst(rng: np.random.Generator, pink: bool) -> Floats:
    n = round(RATE * 0.3)
    sound = _shaped_noise(n, rng, 1.0 if pink else 0.0, 20.0, 11000.0)
    return _fade(sound * 32767 * 10 ** (rng.uniform(-24, -16) / 20), 5)


def _thump(rng: np.random.Generator) -> Floats:
    n = round(RATE * rng.uniform(0.4, 0.6))
    t = np.arange(n) / RATE
    body = np.sin(2 * np.pi * rng.uniform(50, 110) * t) * np.exp(-t / rng.uniform(0.06, 0.15))
    crack = _band_noise(n, rng, 200, 6000) * np.exp(-t / 0.012) * 0.6
    rattle = _band_noise(n, rng, 300, 2000) * np.exp(-t / 0.08) * 0.15
    sound = body + crack + rattle
    return _fade(sound / np.max(np.abs(sound)) * rng.uniform(0.6, 0.9) * 32767, 2)


def non_speech_sounds(seed: int = 1) -> list[Stimulus]:
    """8 coughs, 6 click or knock trains, 4 noise bursts of 300 ms, 6 thumps, 24 backchannels (48)."""
    rng = np.random.default_rng(seed)
    made: list[tuple[str, Floats]] = []
    made += [("cough", _cough(rng)) for _ in range(8)]
    made += [("click", _clicks(rng, knock=i % 2 == 1)) for i in range(6)]
    made += [("burst", _burst(rng, pink=i % 2 == 1)) for i in range(4)]
    made += [("thump", _thump(rng)) for _ in range(6)]
    out: list[Stimulus] = []
    for i, (kind, sound) in enumerate(made):
        piece = cut(sound)
        out.append(assemble(f"{kind}/{i:02d}", kind, "", "", [piece], [], BARGE_LEAD_MS, BARGE_TAIL_MS))
    for i, word in enumerate(BACKCHANNELS):
        for voice in VOICES:
            piece = cut(flite_speech(word, RATE, voice))
            name = f"backchannel/{i:02d}-{voice}"
            out.append(assemble(name, "backchannel", word, voice, [piece], [], BARGE_LEAD_MS, BARGE_TAIL_MS))
    return out


def main() -> None:
    """Print a summary of the stimuli (``python bench/turn_sounds.py [--wav DIR]`` writes them too)."""
    import argparse
    import wave

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--wav", type=Path, help="write every clip as a WAV file into this directory")
    parser.add_argument("--snr", type=float, default=None, help="add the noise bed at this SNR (dB)")
    args = parser.parse_args()
    for group in (paused_utterances(), non_speech_sounds(), barge_in_utterances()):
        for stimulus in group:
            s = stimulus.at_snr(args.snr)
            pauses = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in s.pauses)
            print(
                f"{s.name:22s} {s.voice:4s} {s.onset_ms:6.0f}-{s.end_ms:6.0f} ms ({s.speech_ms:5.0f})"
                f" level {20 * np.log10(s.active_rms / 32768):6.1f} dBFS  pauses [{pauses}]  {s.text}"
            )
            if args.wav:
                args.wav.mkdir(parents=True, exist_ok=True)
                with wave.open(str(args.wav / (s.name.replace("/", "_") + ".wav")), "wb") as out:
                    out.setnchannels(1)
                    out.setsampwidth(2)
                    out.setframerate(RATE)
                    out.writeframes(s.pcm.tobytes())


if __name__ == "__main__":
    main()
