"""``parley talk`` as a real subprocess against a real ``parley serve`` wired to the scripted LLM.

The microphone tests put a stand-in ``sounddevice`` module first on the client's PYTHONPATH: it
"captures" flite speech from a WAV file (at 16 kHz, so the client resamples) and then silence.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import serve

from parley.audio.wav import write_wav
from parley.cli import main
from tests.conformance.conftest import ROOT, Server, free_port
from tests.scripted_llm import Reply, ScriptedLLM
from tests.speech import flite_speech

pytestmark = pytest.mark.slow

WEATHER = "What is the weather like in Paris tomorrow morning?"
WEATHER_WORDS = ("weather", "paris", "tomorrow", "morning")
LIMIT_S = 120.0
"""A safety net for a hung client, never a measurement."""


@dataclass
class Talk:
    returncode: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PARLEY_URL")}
    return {**env, **(extra or {})}


async def talk(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Talk:
    """Run ``parley talk ARGS`` to the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley",
        "talk",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(env),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), LIMIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Talk(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
def weather_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The weather question spoken by flite, as a 16 kHz WAV file."""
    if shutil.which("flite") is None:
        pytest.skip("needs Debian's flite")
    path = tmp_path_factory.mktemp("speech") / "weather.wav"
    write_wav(path, flite_speech(WEATHER, rate=16000), 16000)
    return path


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _user_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("you: ")]


# ------------------------------------------------------------------------------------------ text


async def test_text_turn_prints_the_reply(server: Server, scripted: ScriptedLLM) -> None:
    scripted.script("Hello from the test.")
    result = await talk("--url", server.ws_base, "--text", "hi")
    assert result.returncode == 0, result.stderr
    assert "you: hi" in result.stdout
    assert "assistant: Hello from the test." in result.stdout
    assert re.search(r"text \"hi\"\s+completed", result.stderr), result.stderr
    assert scripted.last_request["messages"][-1]["content"] in ("hi", [{"type": "text", "text": "hi"}])


async def test_text_only_turns_run_in_order(server: Server, scripted: ScriptedLLM) -> None:
    scripted.script("First answer.", "Second answer.")
    result = await talk("--url", server.ws_base, "--text-only", "--text", "one", "--text", "two")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["you: one", "assistant: First answer.", "you: two", "assistant: Second answer."]
    rows = [line for line in result.stderr.splitlines() if re.match(r"\s*\d+\s+text ", line)]
    assert len(rows) == 2 and all("completed" in row and "0.00 s" in row for row in rows), result.stderr


async def test_out_saves_the_reply_audio(server: Server, scripted: ScriptedLLM, tmp_path: Path) -> None:
    scripted.script("This reply is spoken aloud and saved to a file.")
    out = tmp_path / "reply.wav"
    result = await talk("--url", server.ws_base, "--text", "say something", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "assistant: This reply is spoken aloud" in result.stdout
    samples, rate = _read_wav(out)
    assert rate == 24000
    assert len(samples) / rate > 0.3
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 300, "the reply audio is silent"


async def test_stdin_lines_are_text_turns(server: Server, scripted: ScriptedLLM) -> None:
    scripted.script("Piped reply.")
    result = await talk("--url", server.ws_base, "--text-only", stdin=b"from a pipe\n\n")
    assert result.returncode == 0, result.stderr
    assert "you: from a pipe" in result.stdout and "assistant: Piped reply." in result.stdout


async def test_a_failed_response_exits_1(server: Server, scripted: ScriptedLLM) -> None:
    scripted.script(Reply(error_status=500, error_message="the scripted model broke"))
    result = await talk("--url", server.ws_base, "--text-only", "--text", "hi")
    assert result.returncode == 1, result
    assert "error:" in result.stderr
    assert re.search(r"text \"hi\"\s+failed", result.stderr), result.stderr


async def test_events_lists_event_types(server: Server, scripted: ScriptedLLM) -> None:
    scripted.script("Listed.")
    result = await talk("--url", server.ws_base, "--text-only", "--events", "--text", "hi")
    assert result.returncode == 0, result.stderr
    types = [line[2:] for line in result.stderr.splitlines() if line.startswith("· ")]
    assert types[:2] == ["session.created", "session.updated"]
    assert "response.output_text.delta" in types and types[-1] == "response.done"


# ------------------------------------------------------------------------------------------ audio


async def test_wav_with_transcription_and_manual_commit(
    server: Server, scripted: ScriptedLLM, weather_wav: Path
) -> None:
    scripted.script("It will be sunny.")
    result = await talk(
        "--url", server.ws_base, "--wav", str(weather_wav), "--transcribe", "--fast", "--no-vad"
    )
    assert result.returncode == 0, result.stderr
    heard = " ".join(_user_lines(result.stdout)).lower()
    assert any(word in heard for word in WEATHER_WORDS), result.stdout
    assert "assistant: It will be sunny." in result.stdout
    assert re.search(r"wav weather\.wav\s+completed", result.stderr), result.stderr


async def test_wav_with_server_vad(server: Server, scripted: ScriptedLLM, weather_wav: Path) -> None:
    scripted.script("Server VAD ended that turn.")
    result = await talk("--url", server.ws_base, "--wav", str(weather_wav), "--fast", "--text-only")
    assert result.returncode == 0, result.stderr
    assert "you: [" in result.stdout, "without --transcribe the audio is announced, not transcribed"
    assert "assistant: Server VAD ended that turn." in result.stdout
    assert re.search(r"wav weather\.wav\s+completed", result.stderr), result.stderr


# ------------------------------------------------------------------------------------------ microphone

FAKE_SOUNDDEVICE = textwrap.dedent(
    '''
    """A stand-in for sounddevice: one input device that plays a WAV file, then silence."""
    import os
    import pathlib
    import threading
    import time
    import wave

    MODE = os.environ.get("FAKE_SD_MODE", "ok")
    if MODE == "no-portaudio":
        raise OSError("PortAudio library not found")


    class PortAudioError(Exception):
        pass


    def query_devices(kind=None):
        if MODE == "no-device":
            raise PortAudioError("Error querying device -1")
        return {"name": "Fake Mic", "max_input_channels": 1, "default_samplerate": 16000.0}


    class RawInputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, callback):
            self.block = int(blocksize)
            self.callback = callback
            self.stopped = threading.Event()
            self.thread = threading.Thread(target=self.run, daemon=True)

        def start(self):
            self.thread.start()

        def feed(self, data):
            self.callback(data, len(data) // 2, None, None)
            time.sleep(self.block / 16000 / 4)

        def run(self):
            silence = bytes(self.block * 2)
            trigger = os.environ.get("FAKE_MIC_TRIGGER")
            while trigger and not pathlib.Path(trigger).exists() and not self.stopped.is_set():
                self.feed(silence)
            with wave.open(os.environ["FAKE_MIC_WAV"]) as w:
                speech = w.readframes(w.getnframes())
            for i in range(0, len(speech), self.block * 2):
                if self.stopped.is_set():
                    return
                self.feed(speech[i : i + self.block * 2].ljust(self.block * 2, b"\\0"))
            pathlib.Path(os.environ["FAKE_MIC_DONE"]).touch()
            while not self.stopped.is_set():
                self.feed(silence)

        def stop(self):
            self.stopped.set()

        def close(self):
            self.thread.join(5)
    '''
)


@pytest.fixture
def fake_mic(tmp_path: Path, weather_wav: Path) -> dict[str, str]:
    """Client environment with the stand-in sounddevice, speaking the weather question at 16 kHz."""
    (tmp_path / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    speech = weather_wav
    with wave.open(str(speech)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "FAKE_MIC_WAV": str(speech),
        "FAKE_MIC_DONE": str(tmp_path / "played"),
    }


async def test_mic_with_server_vad_until_ctrl_c(
    server: Server, scripted: ScriptedLLM, fake_mic: dict[str, str]
) -> None:
    scripted.script("I heard you through the microphone.")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "parley", "talk", "--url", server.ws_base, "--mic", "--transcribe"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(fake_mic),
    )
    assert process.stdout is not None and process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(LIMIT_S):
            while not any(line.startswith("assistant: I heard you") for line in seen):
                line = (await process.stdout.readline()).decode()
                assert line, f"talk ended early: {seen}, {(await process.stderr.read()).decode()}"
                seen.append(line.rstrip("\n"))
            process.send_signal(signal.SIGINT)
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stdout, stderr = "\n".join(seen) + out.decode(), err.decode()
    assert process.returncode == 0, stderr
    assert any(word in " ".join(_user_lines(stdout)).lower() for word in WEATHER_WORDS), stdout
    assert "Fake Mic" in stderr and re.search(r"mic Fake Mic\s+completed", stderr), stderr


async def test_mic_push_to_talk(
    server: Server, scripted: ScriptedLLM, fake_mic: dict[str, str], tmp_path: Path
) -> None:
    scripted.script("Push to talk works.")
    trigger = tmp_path / "speak-now"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "parley", "talk", "--url", server.ws_base, "--mic", "--no-vad"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env({**fake_mic, "FAKE_MIC_TRIGGER": str(trigger)}),
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        async with asyncio.timeout(LIMIT_S):
            shown = b""
            process.stdin.write(b"\n")  # start talking
            await process.stdin.drain()
            while b"[recording" not in shown:
                chunk = await process.stdout.read(256)
                assert chunk, shown
                shown += chunk
            trigger.touch()
            await asyncio.to_thread(_wait_for_file, Path(fake_mic["FAKE_MIC_DONE"]))
            process.stdin.write(b"\n")  # send; then EOF leaves after the reply
            process.stdin.close()
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stdout = shown.decode() + out.decode()
    assert process.returncode == 0, err.decode()
    assert "assistant: Push to talk works." in stdout
    assert re.search(r"mic Fake Mic\s+completed", err.decode()), err.decode()
    assert not scripted.pending


@pytest.mark.parametrize(
    ("mode", "message"), [("no-portaudio", "PortAudio library"), ("no-device", "no microphone found")]
)
async def test_mic_problems_are_explained(fake_mic: dict[str, str], mode: str, message: str) -> None:
    result = await talk("--url", "ws://127.0.0.1:9/v1", "--mic", env={**fake_mic, "FAKE_SD_MODE": mode})
    assert result.returncode == 1
    assert message in result.stderr and "--wav" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------ failures


async def test_unreachable_server_exits_1_with_a_hint() -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1"
    result = await talk("--url", url, "--text", "hi")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "parley serve" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr


async def test_not_a_realtime_endpoint_exits_1(server: Server) -> None:
    result = await talk("--url", f"{server.http_url}/nowhere", "--text", "hi")
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr and "Traceback" not in result.stderr


async def _minimal_server(websocket: Any) -> None:
    """A bare Realtime server: replies to a text turn in beta event names, or closes on ``close me``."""
    await websocket.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
    async for message in websocket:
        event = json.loads(message)
        if event["type"] == "session.update":
            await websocket.send(json.dumps({"type": "session.updated", "session": event["session"]}))
        elif event["type"] == "conversation.item.create":
            said = event["item"]["content"][0]["text"]
            if said == "close me":
                await websocket.close(1011, "boom")
                return
        elif event["type"] == "response.create":
            ids = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
            await websocket.send(json.dumps({"type": "response.created", "response": {"id": "resp_1"}}))
            for word in ("Old ", "names ", "work."):
                await websocket.send(json.dumps({"type": "response.text.delta", **ids, "delta": word}))
            done = {"id": "resp_1", "status": "completed", "output": []}
            await websocket.send(json.dumps({"type": "response.done", "response": done}))


@pytest.fixture
async def minimal_server() -> AsyncIterator[str]:
    async with serve(_minimal_server, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1"


async def test_any_server_and_its_event_names(minimal_server: str) -> None:
    result = await talk("--url", minimal_server, "--text-only", "--text", "hi")
    assert result.returncode == 0, result.stderr
    assert "assistant: Old names work." in result.stdout


async def test_server_closing_mid_turn_exits_1(minimal_server: str) -> None:
    result = await talk("--url", minimal_server, "--text-only", "--text", "close me")
    assert result.returncode == 1
    assert "closed the connection (code 1011: boom)" in result.stderr
    assert "connection lost" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--text-only", "--out", "x.wav", "--text", "hi"),
        ("--wav", "/nonexistent/speech.wav"),
        ("--url", "not a url", "--text", "hi"),
        ("--timeout", "0", "--text", "hi"),
        ("--text", "   "),
        ("--no-such-option",),
    ],
)
def test_bad_arguments_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code: int | str | None
    try:
        code = main(["talk", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert "error" in capsys.readouterr().err
