"""A local OpenAI-compatible speech server backed by Parley's own engines, for tests and benchmarks.

``POST /v1/audio/transcriptions`` takes a multipart upload as OpenAI does (``file``, ``model``,
``language``, ``prompt``, ``response_format`` json | text | verbose_json, ``timestamp_granularities[]``)
and transcribes it with the pocketsphinx engine; ``POST /v1/audio/speech`` (JSON ``model``, ``input``,
``voice``, ``response_format`` pcm, ``speed``) speaks with the espeak engine, resampled to 24 kHz and
streamed chunk by chunk while it is synthesised. Word timings of ``verbose_json`` are approximate:
pocketsphinx's engine gives none, so the words are spread over the audio by their length.

    async with SpeechServer(api_key="sk-test") as server:
        engine = OpenAISTT(server.base_url, api_key="sk-test")

Tests can make it fail (``fail_status``), answer slowly (``delay_s``) or refuse ``verbose_json``.
Run it alone for benchmarks: ``python -m tests.speech_server --port 8001 [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from parley.audio.resample import StreamResampler, resample
from parley.audio.wav import WavError, read_wav
from parley.config import Settings
from parley.engines.base import EngineError
from parley.engines.stt import pocketsphinx
from parley.engines.tts.espeak import EspeakTTS
from parley.protocol.session_config import VOICES
from tests.local_app import LocalApp

SPEECH_RATE = 24000
CHUNK_BYTES = 4800
"""Speech is written to the client in pieces of this many bytes (100 ms at 24 kHz)."""
FORMATS = ("json", "text", "verbose_json")


class SpeechServer(LocalApp):
    """The server, on ``host``:``port`` (0: a free port) until the ``async with`` block ends."""

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.fail_status: int | None = None
        """Answer every request with this HTTP status and an OpenAI-style error body."""
        self.delay_s = 0.0
        """Wait this long before answering each request."""
        self.verbose_json = True
        """Whether ``response_format=verbose_json`` is accepted (else 400, as some models do)."""
        self.requests: list[dict[str, Any]] = []
        """Each request's fields (``path`` included, the audio file's size instead of its bytes)."""
        self.stt = pocketsphinx.create(Settings())
        self.tts = EspeakTTS()

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"http://{self.host}:{self.port}/v1"

    async def __aenter__(self) -> SpeechServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        self.port = await self._serve(app, self.host, self.port)
        return self

    # ------------------------------------------------------------------------------------ handlers

    async def _refusal(self, request: web.Request) -> web.Response | None:
        """The error to answer with (auth, or a failure the test asked for), after any delay."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if self.fail_status is not None:
            return _error(self.fail_status, "The speech server was told to fail.", "server_error")
        return None

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
        form = await request.post()
        upload = form.get("file")
        fields = {
            key: str(value) for key, value in form.items() if not key.startswith(("file", "timestamp_"))
        }
        granularities = [str(value) for value in form.getall("timestamp_granularities[]", [])]
        self.requests.append({"path": request.path, **fields, "timestamp_granularities": granularities})
        response_format = fields.get("response_format", "json")
        if not isinstance(upload, web.FileField):
            return _error(400, "Missing the audio file ('file').", "invalid_request_error")
        if not fields.get("model"):
            return _error(400, "Missing 'model'.", "invalid_request_error")
        if response_format not in FORMATS or (response_format == "verbose_json" and not self.verbose_json):
            return _error(400, f"response_format {response_format!r} is not supported.", "invalid_value")
        try:
            pcm, rate = read_wav(upload.file.read())
        except WavError as exc:
            return _error(400, f"Could not read the audio file: {exc}", "invalid_value")
        audio = resample(pcm, rate, self.stt.sample_rate)
        stream = self.stt.start(language=fields.get("language"), prompt=fields.get("prompt"))
        try:
            await stream.feed(audio)
            result = await stream.finish()
        except EngineError as exc:
            return _error(400, str(exc), exc.code)
        finally:
            stream.close()
        if response_format == "text":
            return web.Response(text=result.text + "\n")
        if response_format == "json":
            return web.json_response({"text": result.text})
        duration = len(audio) / self.stt.sample_rate
        body: dict[str, Any] = {"task": "transcribe", "language": "english", "duration": duration}
        body |= {"text": result.text, "segments": []}
        if "word" in granularities:
            body["words"] = _spread_words(result.text, duration)
        return web.json_response(body)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            params = await request.json()
        except json.JSONDecodeError:
            return _error(400, "The body is not JSON.", "invalid_request_error")
        self.requests.append({"path": request.path, **params})
        text, voice, speed = params.get("input"), params.get("voice"), params.get("speed", 1.0)
        if not isinstance(text, str) or not text.strip() or not params.get("model"):
            return _error(400, "Give 'model' and a non-empty 'input'.", "invalid_request_error")
        if params.get("response_format", "mp3") != "pcm":
            return _error(400, "This server only speaks response_format 'pcm'.", "invalid_value")
        if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            return _error(400, "'speed' must be a number from 0.25 to 4.0.", "invalid_value")
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        resampler = StreamResampler(self.tts.sample_rate, SPEECH_RATE)
        espeak_voice = voice if voice in VOICES else self.tts.default_voice
        async for pcm in self.tts.synthesize(text, voice=espeak_voice, speed=float(speed)):
            await _write(response, resampler.process(pcm).astype("<i2").tobytes())
        await _write(response, resampler.flush().astype("<i2").tobytes())
        await response.write_eof()
        return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    for start in range(0, len(data), CHUNK_BYTES):
        await response.write(data[start : start + CHUNK_BYTES])


def _spread_words(text: str, duration: float) -> list[dict[str, Any]]:
    """Word timings that share ``duration`` out by word length (the engine gives no real ones)."""
    words = text.split()
    total = sum(len(word) + 1 for word in words) or 1
    timed, start = [], 0.0
    for word in words:
        end = start + duration * (len(word) + 1) / total
        timed.append({"word": word, "start": round(start, 3), "end": round(end, 3)})
        start = end
    return timed


def _error(status: int, message: str, code: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers={"x-should-retry": "false"})


async def _serve(host: str, port: int, api_key: str | None) -> None:
    async with SpeechServer(api_key=api_key, host=host, port=port) as server:
        await server.stt.warm_up()
        await server.tts.warm_up()
        print(f"speech server on {server.base_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible speech server (tests only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: none)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
