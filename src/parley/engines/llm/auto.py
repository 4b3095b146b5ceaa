"""``auto``: the configured OpenAI-compatible server, else a local Ollama if one answers, else echo."""

from __future__ import annotations

import json
import logging
import urllib.request

from parley.config import Settings, env_name
from parley.engines.base import LanguageModel
from parley.engines.llm import echo, openai_chat

log = logging.getLogger("parley.engines.llm")

OLLAMA_PROBE_TIMEOUT_S = 0.5


def create(settings: Settings) -> LanguageModel:
    if settings.llm_base_url:
        log.info(
            "LLM engine: openai-compatible server at %s (%s is set)",
            settings.llm_base_url,
            env_name("llm_base_url"),
        )
        return openai_chat.create(settings)

    ollama_url = settings.ollama_url.rstrip("/")
    models = probe_ollama(ollama_url)
    if models:
        model = settings.llm_model or pick_model(models)
        if settings.llm_model and not {model, f"{model}:latest"} & set(models):
            log.warning(
                "Ollama at %s does not have model %r (it has: %s)", ollama_url, model, ", ".join(models)
            )
        log.info(
            "LLM engine: local Ollama at %s with model %s (%s is not set and Ollama answered)",
            ollama_url,
            model,
            env_name("llm_base_url"),
        )
        return openai_chat.OpenAIChatLLM(
            f"{ollama_url}/v1",
            model=model,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
        )

    why = (
        f"Ollama at {ollama_url} answered but has no models (try `ollama pull llama3.2`)"
        if models is not None
        else f"no Ollama answered at {ollama_url}"
    )
    log.info(
        "LLM engine: echo, which only repeats what it hears (%s is not set and %s); set %s to an "
        "OpenAI-compatible server to give the agent a language model",
        env_name("llm_base_url"),
        why,
        env_name("llm_base_url"),
    )
    return echo.EchoLLM()


def probe_ollama(url: str, timeout_s: float = OLLAMA_PROBE_TIMEOUT_S) -> list[str] | None:
    """The model names a local Ollama at ``url`` offers, or None if nothing Ollama-like answers.

    Synchronous on purpose: it runs once at startup. Proxies are bypassed: the Ollama sought is local.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/api/tags", timeout=timeout_s) as response:
            data = json.loads(response.read())
    except (OSError, ValueError) as exc:  # URLError, timeouts and refusals are OSErrors
        log.debug("No Ollama at %s: %s", url, exc)
        return None
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        log.debug("%s/api/tags answered, but not like Ollama", url)
        return None
    names = (entry.get("name") or entry.get("model") for entry in entries if isinstance(entry, dict))
    return [name for name in names if isinstance(name, str) and name]


def pick_model(models: list[str]) -> str:
    """The first model that can chat: embedding models (``nomic-embed-text`` and the like) cannot."""
    return next((model for model in models if "embed" not in model.lower()), models[0])
