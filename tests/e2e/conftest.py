"""Servers for the end-to-end tests: a dev-mode ``parley serve`` (playground on, loopback WebRTC,
the scripted LLM of ``tests/conftest.py``) and one with an API key (playground off), each started
once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.conftest import Server, start_server, stop_server
from tests.conftest import LLMThread


@pytest.fixture(scope="session")
def dev_server(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Dev mode (no API keys), so ``PARLEY_PLAYGROUND=auto`` serves the playground."""
    env = {
        "PARLEY_API_KEYS": "",
        "PARLEY_PLAYGROUND": "auto",
        "PARLEY_WEBRTC_HOST_ADDRESSES": "127.0.0.1",  # aioice offers no loopback candidate otherwise
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
    }
    server = start_server(tmp_path_factory.mktemp("parley-dev"), env, name="dev")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API key is configured, so ``PARLEY_PLAYGROUND=auto`` serves no playground."""
    env = {"PARLEY_API_KEYS": "sk-x", "PARLEY_PLAYGROUND": "auto", "PARLEY_LLM": "echo"}
    server = start_server(tmp_path_factory.mktemp("parley-keyed"), env, name="keyed")
    yield server
    stop_server(server)
