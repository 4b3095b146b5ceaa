"""Speech recognition by an OpenAI-compatible speech server (OpenAI, speaches, vLLM...).

Two ways to talk to it:

- HTTP (the default): each utterance is buffered and posted as a 16 kHz WAV to
  ``{base}/audio/transcriptions`` when it ends, through the ``openai`` client. Word timings are asked
  for (``verbose_json`` with word granularity); a server that refuses that format is asked for plain
  ``json`` from then on. There are no partial transcripts: the endpoint transcribes whole files.
- Realtime (``PARLEY_STT_OPENAI_REALTIME``): each utterance opens a WebSocket to
  ``{base}/realtime?intent=transcription`` (as OpenAI and Parley offer), streams its audio as 24 kHz
  pcm while it is fed, and commits it at the end. The server's transcript deltas are the partials.
  One connection per utterance keeps utterances apart (no state to resynchronise after an error),
  at the price of a handshake per utterance, made while the first audio is fed.

Every failure (unreachable server, HTTP error, time-out, an ``error`` event) is an
:class:`EngineError` naming the server and, where it helps, the setting to change.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from typing import Any

import aiohttp
import numpy as np
import openai
from openai import AsyncOpenAI, omit
from openai.types.audio import TranscriptionVerbose
from yarl import URL

from parley.audio.resample import StreamResampler
from parley.audio.wav import wav_bytes
from parley.config import Settings, env_name
from parley.engines.base import PCM, EngineError, Transcription, Word
from parley.engines.openai_client import NO_API_KEY, capital, error_message, speech_error, speech_server
from parley.engines.stt.streams import mono_int16

log = logging.getLogger("parley.engines.stt.openai")

SAMPLE_RATE = 16000
REALTIME_RATE = 24000
"""The realtime API's ``audio/pcm`` rate."""
MIN_SECONDS = 0.1
"""OpenAI refuses shorter audio, so shorter utterances are padded with silence to this length."""
_COMPLETED = "conversation.item.input_audio_transcription.completed"
_DELTA = "conversation.item.input_audio_transcription.delta"
_FAILED = "conversation.item.input_audio_transcription.failed"
_CLOSING: set[asyncio.Task[None]] = set()  # connections closing in the background, kept from the GC


def _language_code(language: str | None) -> str | None:
    """``en-US`` / ``en_gb`` -> ``en``: the servers take ISO-639-1 codes."""
    return re.split(r"[-_]", (language or "").strip())[0].lower() or None


def _padded(pcm: PCM, rate: int) -> PCM:
    short = round(MIN_SECONDS * rate) - len(pcm)
    return np.concatenate([pcm, np.zeros(short, dtype=np.int16)]) if short > 0 else pcm


class OpenAISTT:
    """The ``openai`` speech-to-text engine: 16 kHz audio to a remote OpenAI-compatible server."""

    name = "openai"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "whisper-1",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        realtime: bool = False,
        max_retries: int = 1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.realtime = realtime
        self.where = f"the speech-to-text server at {self.base_url}"
        self._verbose = True  # ask for word timings until the server refuses them
        self._client = AsyncOpenAI(
            base_url=self.base_url, api_key=api_key or NO_API_KEY, timeout=timeout_s, max_retries=max_retries
        )

    @property
    def realtime_url(self) -> URL:
        url = URL(f"{self.base_url}/realtime").update_query(intent="transcription")
        return url.with_scheme({"http": "ws", "https": "wss"}.get(url.scheme, url.scheme))

    def start(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        channel: dict[str, Any] | None = None,
    ) -> HttpTranscriptionStream | RealtimeTranscriptionStream:
        """Begin an utterance; ``language`` (``en``, ``en-US``...) and ``prompt`` go to the server.
        ``channel`` is not used: the server keeps no state between requests."""
        code = _language_code(language)
        if self.realtime:
            return RealtimeTranscriptionStream(self, code, prompt or None)
        return HttpTranscriptionStream(self, code, prompt or None)

    async def transcribe(self, pcm: PCM, language: str | None, prompt: str | None) -> Transcription:
        """Post one utterance to ``/audio/transcriptions`` and return its transcript."""
        audio = ("utterance.wav", wav_bytes(_padded(pcm, SAMPLE_RATE), SAMPLE_RATE), "audio/wav")
        seconds = len(pcm) / SAMPLE_RATE
        try:
            if self._verbose:
                verbose = await self._verbose_transcription(audio, language, prompt)
                if verbose is not None:
                    words = tuple(Word(w.word.strip(), w.start, w.end) for w in verbose.words or ())
                    return Transcription(verbose.text.strip(), seconds, language, words)
            plain = await self._client.audio.transcriptions.create(
                file=audio,
                model=self.model,
                language=language or omit,
                prompt=prompt or omit,
                response_format="json",
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise speech_error(
                exc, where=self.where, stage="stt", model=self.model, timeout_s=self.timeout_s
            ) from exc
        return Transcription(plain.text.strip(), seconds, language)

    async def _verbose_transcription(
        self, audio: tuple[str, bytes, str], language: str | None, prompt: str | None
    ) -> TranscriptionVerbose | None:
        """The transcript with word timings, or None when the server refuses ``verbose_json`` (it is
        not asked again)."""
        try:
            return await self._client.audio.transcriptions.create(
                file=audio,
                model=self.model,
                language=language or omit,
                prompt=prompt or omit,
                response_format="verbose_json",
                timestamp_granularities=["word"],
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            log.info(
                "%s refused verbose_json (%s); asking for json from now on", self.where, error_message(exc)
            )
            self._verbose = False
            return None

    async def warm_up(self) -> None:
        """Transcribe 0.3 s of silence, which proves the server answers (raises EngineError if not)."""
        stream = self.start()
        try:
            await stream.feed(np.zeros(SAMPLE_RATE * 3 // 10, dtype=np.int16))
            await stream.finish()
        finally:
            stream.close()
        log.info("%s answers (model %s, %s)", self.where, self.model, "realtime" if self.realtime else "http")

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


class HttpTranscriptionStream:
    """One utterance for ``/audio/transcriptions``. ``feed`` only buffers and returns no partials (the
    endpoint transcribes whole files); ``finish`` posts the audio."""

    def __init__(self, engine: OpenAISTT, language: str | None, prompt: str | None) -> None:
        self._engine = engine
        self._language = language
        self._prompt = prompt
        self._chunks: list[PCM] = []
        self._state = "open"  # open | finished | closed
        self._result: Transcription | None = None

    async def feed(self, pcm: PCM) -> str | None:
        data = mono_int16(pcm, "the openai STT engine")
        if self._state != "open":
            raise EngineError(f"this recognition stream is already {self._state}")
        if len(data):
            self._chunks.append(data.copy())
        return None

    async def finish(self) -> Transcription:
        if self._result is not None:
            return self._result
        if self._state == "closed":
            raise EngineError("this recognition stream was closed")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        empty = Transcription("", 0.0, self._language)
        result = await self._engine.transcribe(pcm, self._language, self._prompt) if len(pcm) else empty
        self._result, self._state, self._chunks = result, "finished", []
        return result

    def close(self) -> None:
        if self._state == "open":
            self._state = "closed"
        self._chunks = []


class RealtimeTranscriptionStream:
    """One utterance over its own realtime transcription WebSocket (opened by the first ``feed``)."""

    def __init__(self, engine: OpenAISTT, language: str | None, prompt: str | None) -> None:
        self._engine = engine
        self._language = language
        self._prompt = prompt
        self._resampler = StreamResampler(SAMPLE_RATE, REALTIME_RATE)
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._completed = asyncio.Event()  # the transcript came, or the server failed
        self._failure: EngineError | None = None
        self._text = ""  # the deltas so far, then the final transcript
        self._reported = ""
        self._samples = 0
        self._sent = 0  # 24 kHz samples sent
        self._state = "open"  # open | finished | closed
        self._result: Transcription | None = None

    async def feed(self, pcm: PCM) -> str | None:
        """Send the audio; return the server's transcript so far when it has grown since last time."""
        data = mono_int16(pcm, "the openai STT engine")
        if self._state != "open":
            raise EngineError(f"this recognition stream is already {self._state}")
        if len(data):
            async with self._lock:
                if self._state != "open":
                    return None
                await self._send_audio(self._resampler.process(data))
                self._samples += len(data)
        if self._failure is not None:
            raise self._failure
        if self._text.strip() == self._reported:
            return None
        self._reported = self._text.strip()
        return self._reported

    async def finish(self) -> Transcription:
        async with self._lock:
            if self._result is not None:
                return self._result
            if self._state == "closed":
                raise EngineError("this recognition stream was closed")
            try:
                text = await self._commit() if self._samples else ""
            except BaseException:
                self.close()
                raise
            await _shut(*self._detach())
            self._result = Transcription(text.strip(), self._samples / SAMPLE_RATE, self._language)
            self._state = "finished"
            return self._result

    def close(self) -> None:
        """Drop the connection (idempotent; the WebSocket closes in the background)."""
        if self._state == "open":
            self._state = "closed"
        http, ws = self._detach()
        if http is not None:
            task = asyncio.get_running_loop().create_task(_shut(http, ws))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    def _detach(self) -> tuple[aiohttp.ClientSession | None, aiohttp.ClientWebSocketResponse | None]:
        """Stop reading and hand over the connection to close."""
        if self._reader is not None:
            self._reader.cancel()
        http, ws, self._http, self._ws = self._http, self._ws, None, None
        return http, ws

    async def _commit(self) -> str:
        short = round(MIN_SECONDS * REALTIME_RATE) - self._sent
        await self._send_audio(np.concatenate([self._resampler.flush(), np.zeros(max(0, short), np.int16)]))
        await self._send({"type": "input_audio_buffer.commit"})
        try:
            await asyncio.wait_for(self._completed.wait(), self._engine.timeout_s)
        except TimeoutError:
            where, timeout_s = self._engine.where, self._engine.timeout_s
            raise EngineError(f"No transcript from {where} within {timeout_s:g} s") from None
        if self._failure is not None:
            raise self._failure
        return self._text

    async def _send_audio(self, pcm: PCM) -> None:
        if len(pcm):
            audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode("ascii")
            await self._send({"type": "input_audio_buffer.append", "audio": audio})
            self._sent += len(pcm)

    async def _send(self, event: dict[str, Any]) -> None:
        if self._failure is not None:
            raise self._failure
        ws = self._ws or await self._connect()
        try:
            await ws.send_str(json.dumps(event))
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise self._failure or EngineError(f"Lost the connection to {self._engine.where}: {exc}") from exc

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        engine = self._engine
        url = engine.realtime_url
        headers = {"Authorization": f"Bearer {engine.api_key}"} if engine.api_key else {}
        http = self._http = aiohttp.ClientSession()
        try:
            ws = await asyncio.wait_for(
                http.ws_connect(url, headers=headers, max_msg_size=0), engine.timeout_s
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await http.close()
            self._http, self._failure = None, EngineError(_connect_message(engine, url, exc))
            raise self._failure from exc
        if self._state != "open":  # closed while connecting
            await _shut(http, ws)
            raise EngineError("this recognition stream was closed")
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        transcription = {"model": engine.model, "language": self._language, "prompt": self._prompt}
        audio_input = {
            "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
            "transcription": {key: value for key, value in transcription.items() if value},
            "turn_detection": None,
        }
        session = {"type": "transcription", "audio": {"input": audio_input}}
        await ws.send_str(json.dumps({"type": "session.update", "session": session}))
        return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        where = capital(self._engine.where)
        failure = f"{where} closed the connection before the transcript came"
        async for message in ws:
            try:
                event = json.loads(message.data) if message.type == aiohttp.WSMsgType.TEXT else {}
                kind = event.get("type")
            except (ValueError, AttributeError):
                failure = f"{where} sent an event that is not JSON"
                break
            if kind == _DELTA:
                self._text += str(event.get("delta") or "")
            elif kind == _COMPLETED:
                self._text = str(event.get("transcript") or "")
                self._completed.set()
                return
            elif kind in (_FAILED, "error"):
                error = event.get("error")
                failure = (
                    f"{where} reported an error: {error.get('message') if isinstance(error, dict) else event}"
                )
                break
        self._failure = EngineError(failure)
        self._completed.set()


def _connect_message(engine: OpenAISTT, url: URL, exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"No answer from {engine.where} within {engine.timeout_s:g} s"
    if not isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"Could not reach {engine.where} ({url}): {exc}"
    message = f"{capital(engine.where)} refused the realtime connection (HTTP {exc.status})"
    if exc.status in (401, 403):
        return f"{message}: check {env_name('stt_openai_api_key')}"
    if exc.status == 404:
        return f"{message}: it has no {url.path} endpoint; set {env_name('stt_openai_realtime')}=false"
    return message


async def _shut(http: aiohttp.ClientSession | None, ws: aiohttp.ClientWebSocketResponse | None) -> None:
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        if ws is not None:
            await asyncio.wait_for(ws.close(), 2.0)
    if http is not None:
        await http.close()


def create(settings: Settings) -> OpenAISTT:
    return OpenAISTT(**speech_server(settings, "stt"), realtime=settings.stt_openai_realtime)
