"""The llama-cpp engine's worker process: llama.cpp (through llama-cpp-python) running a GGUF on the CPU.

Only that process imports this module, and with it llama_cpp: :mod:`.llama_cpp` (the engine the server
uses) starts the process, says why it is separate, and describes the messages on the socket between them.
:func:`serve` answers them one at a time until the server says ``stop`` or goes away.

The model is loaded on the first request (the engine's warm-up sends one). The prompt is the GGUF's own
Jinja chat template (``tokenizer.chat_template``), or the one named by ``PARLEY_LLM_LLAMA_CHAT_FORMAT``
(a named template of the GGUF, or a llama-cpp-python format such as ``chatml``). Tools are given to
templates that render them (Qwen 2.5, Llama 3.1, Hermes); for others they are described in the system
message. ``tool_choice`` ``required`` or a function name constrains sampling with a grammar built from
the tools' JSON schemas, so the reply is always one valid call; ``auto`` streams text and recognises the
calls the model writes (see :mod:`.llama_tools`). A conversation too long for the context loses its
oldest messages (never the leading system messages nor the last user turn). The KV cache is reused
across requests that share a prompt prefix (the conversation so far).
"""

from __future__ import annotations

import codecs
import inspect
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import llama_chat_format
from llama_cpp.llama_grammar import LlamaGrammar

from parley.config import env_name
from parley.engines.base import ChatRequest, EngineError, Finish, FunctionTool, LLMEvent, ToolCallDelta, Usage
from parley.engines.llm.llama_tools import (
    ReplyParser,
    call_schema,
    drop_oldest_turn,
    new_call_id,
    parse_calls,
    template_messages,
    tool_spec,
    tools_system_prompt,
)

log = logging.getLogger("parley.engines.llm.llama_cpp")

DEFAULT_TEMPERATURE = 0.8
REPLY_ROOM = 512
"""Tokens kept free for the reply when a long conversation is cut (at most a quarter of the context)."""
CLOSED = "The llama-cpp language model was closed during the reply"
_PROBE_TOOL = FunctionTool("parley_probe_function", "Probe.", {"type": "object", "properties": {}})

Message = tuple[Any, ...]


def main() -> None:
    """``python -m parley.engines.llm.llama_worker <fd>``: serve the server on the socket at that file
    descriptor, which the server passes to this process."""
    serve(Connection(int(sys.argv[1])))


def serve(conn: Connection) -> None:
    """Answer the server's messages on ``conn``, the first of which is ``("configure", settings)``,
    until it says ``stop`` or its end of the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which then stops this
    model: LlamaModel | None = None
    try:
        _, config = conn.recv()
        level = config.pop("log_level")
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s")
        model = LlamaModel(**config)
        inbox = Inbox(conn)
        while (message := inbox.next())[0] != "stop":
            if message[0] == "generate":
                _answer(conn, inbox, model, message[1], message[2])
            # else a cancel that came after its request had ended
    except (EOFError, ConnectionError):
        log.debug("llama-cpp: the server process is gone")
    finally:
        if model is not None:
            model.close()


def _answer(conn: Connection, inbox: Inbox, model: LlamaModel, request_id: int, request: ChatRequest) -> None:
    inbox.begin(request_id)
    reply: Message
    try:
        for event in model.generate(request, inbox.should_stop):
            conn.send(("event", request_id, event))
        reply = ("error", request_id, CLOSED) if inbox.later else ("done", request_id, model.sampled)
    except (EOFError, ConnectionError):
        raise
    except EngineError as exc:
        reply = ("error", request_id, str(exc))
    except Exception as exc:
        log.exception("llama-cpp: generation failed")
        reply = ("error", request_id, f"The llama-cpp language model failed: {exc}")
    conn.send(reply)


class Inbox:
    """The worker's end of the socket, read between requests (:meth:`next`) and between tokens
    (:meth:`should_stop`: whether the request under way must end). A cancel of that request ends it; a
    cancel of an older one is ignored; anything else (only ``stop`` can come during a request, since
    the server sends the next request after the cancel of the last) ends it and waits for :meth:`next`.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.later: deque[Message] = deque()
        self.request_id: int | None = None
        self.cancelled = False

    def next(self) -> Message:
        message: Message = self.later.popleft() if self.later else self.conn.recv()
        return message

    def begin(self, request_id: int) -> None:
        self.request_id, self.cancelled = request_id, False

    def should_stop(self) -> bool:
        while not (self.cancelled or self.later) and self.conn.poll():
            try:
                message: Message = self.conn.recv()
            except EOFError:  # the server process is gone
                message = ("stop",)
            if message[0] != "cancel":
                self.later.append(message)
            elif message[1] == self.request_id:
                self.cancelled = True
        return self.cancelled or bool(self.later)


@dataclass
class _Loaded:
    llama: llama_cpp.Llama
    vocab: Any
    formatter: Any
    """A llama-cpp-python ``ChatFormatter``: messages (and tools) -> prompt text and stop strings."""
    native_tools: bool
    """Whether the template writes the tools into the prompt itself."""


class LlamaModel:
    """A GGUF loaded on first use, and the replies it samples."""

    def __init__(
        self, model_path: Path, *, n_ctx: int = 4096, n_threads: int = 1, chat_format: str | None = None
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format
        self.sampled = 0
        """Tokens sampled by the last generation, stopped early or not."""
        self._loaded: _Loaded | None = None

    def generate(self, request: ChatRequest, should_stop: Callable[[], bool]) -> Iterator[LLMEvent]:
        """The reply's events; ends early, with no Usage/Finish, once ``should_stop()`` (checked between
        tokens, and before the model reads the prompt) is true."""
        self.sampled = 0
        if should_stop():
            return
        model = self._load()
        tools = request.tools if request.tool_choice != "none" else []
        forced = bool(tools) and request.tool_choice not in ("auto", "none")
        prompt, stops = self._fit(model, request, tools)
        limit = self.n_ctx - len(prompt)
        if request.max_output_tokens is not None:
            limit = min(limit, request.max_output_tokens)
        grammar = _grammar(call_schema(tools, request.tool_choice)) if forced else None
        parser = ReplyParser(
            [tool.name for tool in tools], parallel=request.parallel_tool_calls is not False, stop=stops
        )
        temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
        written, truncated = "", False
        with closing(self._texts(model, prompt, temperature, grammar, should_stop)) as texts:
            for text in texts:
                self.sampled += 1
                if grammar is not None:
                    written += text
                    if written.rstrip().endswith("}") and _json(written) is not None:
                        break
                else:
                    yield from parser.feed(text)
                    if parser.stopped:
                        break
                if self.sampled >= limit:
                    truncated = True
                    break
        if should_stop():
            return
        if grammar is None:
            yield from parser.finish()
            calls = parser.calls
        else:  # the grammar allows exactly one call: complete unless cut at the token limit
            found = parse_calls(_json(written), {tool.name for tool in tools}) or []
            for name, arguments in found:
                yield ToolCallDelta(0, arguments, call_id=new_call_id(), name=name)
            calls = len(found)
        yield Usage(len(prompt), self.sampled)
        yield Finish("tool_calls" if calls else "length" if truncated else "stop")

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.llama.close()
            self._loaded = None

    def _texts(
        self,
        model: _Loaded,
        prompt: list[int],
        temperature: float,
        grammar: LlamaGrammar | None,
        should_stop: Callable[[], bool],
    ) -> Generator[str, None, None]:
        """The text of each token sampled after ``prompt``, until an end-of-generation token or
        ``should_stop()``. Bytes of a character split across tokens come with its last token."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        with closing(model.llama.generate(prompt, temp=temperature, grammar=grammar)) as tokens:
            for token in tokens:
                if should_stop() or llama_cpp.llama_vocab_is_eog(model.vocab, token):
                    return
                yield decoder.decode(model.llama.detokenize([token]))

    def _fit(
        self, model: _Loaded, request: ChatRequest, tools: Sequence[FunctionTool]
    ) -> tuple[list[int], list[str]]:
        """The prompt's tokens and stop strings, without as few of the oldest messages as it takes to
        leave room for the reply in the context."""
        room = min(request.max_output_tokens or REPLY_ROOM, self.n_ctx // 4)
        rendered = self._render(model, request.messages, tools)
        if len(rendered[0]) + room <= self.n_ctx:
            return rendered
        versions = [list(request.messages)]  # versions[n]: without the n oldest droppable messages
        while (shorter := drop_oldest_turn(versions[-1])) is not None:
            versions.append(shorter)
        low, high, fits = 1, len(versions) - 1, None
        while low <= high:  # the fewest drops that fit, by bisection (each try renders the template)
            middle = (low + high) // 2
            tried = self._render(model, versions[middle], tools)
            if len(tried[0]) + room <= self.n_ctx:
                fits, high = tried, middle - 1
            else:
                low = middle + 1
        if fits is None:  # the shortest version, if it leaves room for any reply at all
            fits = self._render(model, versions[-1], tools) if len(versions) > 1 else rendered
            if len(fits[0]) >= self.n_ctx:
                raise EngineError(
                    f"The conversation does not fit the language model's context of {self.n_ctx} tokens "
                    f"even without its older messages: shorten the instructions or raise "
                    f"{env_name('llm_llama_context')}"
                )
        log.debug("llama-cpp: the conversation was cut to %d tokens to fit the context", len(fits[0]))
        return fits

    def _render(
        self, model: _Loaded, messages: Sequence[dict[str, Any]], tools: Sequence[FunctionTool]
    ) -> tuple[list[int], list[str]]:
        native = model.native_tools
        extra = tools_system_prompt(tools) if tools and not native else None
        chat = template_messages(messages, native_tools=native, tools_prompt=extra)
        specs = [tool_spec(tool) for tool in tools] if tools and native else None
        try:
            result = model.formatter(messages=chat, tools=specs)
        except Exception as exc:  # jinja2 errors, and raise_exception() in templates
            raise EngineError(
                f"The chat template of {self.model_path.name} could not write the conversation: {exc}"
            ) from exc
        prompt = model.llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stops = [result.stop] if isinstance(result.stop, str) else list(result.stop or ())
        return prompt, stops

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        started = time.perf_counter()
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not load the model {self.model_path}: {exc}") from exc
        formatter = _formatter(llama, self.chat_format, self.model_path)
        native = _renders_tools(formatter)
        self._loaded = _Loaded(llama, llama_cpp.llama_model_get_vocab(llama.model), formatter, native)
        log.info(
            "llama-cpp: loaded %s in %.2f s (context %d tokens, %d threads, template %s tools)",
            self.model_path.name,
            time.perf_counter() - started,
            self.n_ctx,
            self.n_threads,
            "with" if native else "without",
        )
        return self._loaded


def _formatter(llama: llama_cpp.Llama, chat_format: str | None, path: Path) -> Any:
    """The chat formatter: a Jinja template of the GGUF, else a llama-cpp-python format by name."""
    templates = {
        (
            "default" if key == "tokenizer.chat_template" else key.removeprefix("tokenizer.chat_template.")
        ): value
        for key, value in llama.metadata.items()
        if key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")
    }
    name = chat_format or ("default" if "default" in templates else str(llama.chat_format))
    template = templates.get(name.removeprefix("chat_template."))
    if template is not None:
        eos, bos = llama.token_eos(), llama.token_bos()
        return llama_chat_format.Jinja2ChatFormatter(
            template,
            eos_token=_token_text(llama, eos),
            bos_token=_token_text(llama, bos),
            stop_token_ids=[eos],
        )
    try:
        handler = llama_chat_format.get_chat_completion_handler(name)
    except llama_chat_format.LlamaChatCompletionHandlerNotFoundException:
        handler = None
    # Named formats are registered as completion handlers wrapping the formatter function.
    formatter = inspect.getclosurevars(handler).nonlocals.get("chat_formatter") if handler else None
    if formatter is None:
        choices = ", ".join([*templates, "chatml", "llama-2", "llama-3", "mistral-instruct", "..."])
        raise EngineError(
            f"Unknown chat format {name!r} for {path.name}: set {env_name('llm_llama_chat_format')} to one "
            f"of {choices} (or leave it unset to use the model's own template)"
        )
    return formatter


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return "" if token < 0 else llama.detokenize([token], special=True).decode("utf-8", "ignore")


def _renders_tools(formatter: Any) -> bool:
    try:
        prompt = formatter(
            messages=[{"role": "user", "content": "Hi"}], tools=[tool_spec(_PROBE_TOOL)]
        ).prompt
    except Exception:
        return False
    return _PROBE_TOOL.name in str(prompt)


def _grammar(schema: dict[str, Any]) -> LlamaGrammar:
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


def _json(text: str) -> Any:
    """``text`` decoded as JSON, or None. Raw control characters in strings are accepted: llama.cpp's
    grammars let byte tokens write them (it does not check UTF-8 continuation bytes)."""
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        return None


if __name__ == "__main__":
    main()
