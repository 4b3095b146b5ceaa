"""A small driver for headless Chromium over the DevTools protocol (CDP), in pure Python.

Chromium starts with the flags of TRANSPORTS.md §2 (fake microphone playing a WAV file once, no
autoplay gate, loopback ICE candidates allowed) and the page to open; the driver finds the page in
``GET /json/list`` and talks to it over its DevTools WebSocket (aiohttp), mostly with
``Runtime.evaluate``. Chromium runs in its own process group, which is killed on exit::

    async with Chromium(url, fake_audio=wav, profile=tmp / "profile") as page:
        state = await page.evaluate("JSON.stringify(window.parley)")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
START_LIMIT_S = 60.0
"""A safety net for a Chromium that does not start, never a measurement."""


def chromium_path() -> str | None:
    """The Chromium to drive (Debian's package), or None when it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def chromium_command(executable: str, url: str, *, fake_audio: Path, profile: Path, port: int) -> list[str]:
    """The command line: the exact flags that worked in TRANSPORTS.md §2, then the page."""
    return [
        executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_audio}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--remote-debugging-address=127.0.0.1",
        f"--remote-debugging-port={port}",
        url,
    ]


class Page:
    """One page target: CDP commands, and the console messages and exceptions it logged."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        """``console.*`` calls and uncaught exceptions, as ``"<kind>: <text>"``."""
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="cdp reader")

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a CDP command and return its ``result`` (raises on a CDP error)."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self._ws.send_str(json.dumps({"id": self._next_id, "method": method, "params": params or {}}))
        reply = await asyncio.wait_for(future, START_LIMIT_S)
        if "error" in reply:
            raise RuntimeError(f"CDP {method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON-able Python."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                params = data["params"]
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                self.console.append(f"console.{params['type']}: {args}")
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                self.console.append(f"exception: {text}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the DevTools connection closed"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Chromium:
    """Headless Chromium showing ``url``; ``async with`` gives its :class:`Page`."""

    def __init__(self, url: str, *, fake_audio: Path, profile: Path, executable: str = CHROMIUM) -> None:
        self.url = url
        self.port = _free_port()
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile.parent / f"{profile.name}-chromium.log"
        self.command = chromium_command(
            executable, url, fake_audio=fake_audio, profile=profile, port=self.port
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.page: Page | None = None

    def log(self) -> str:
        """What Chromium wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _start(self) -> None:
        with self.log_path.open("wb") as log:  # its own process group, so that all of it can be killed
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def __aenter__(self) -> Page:
        self._start()
        try:
            self._http = aiohttp.ClientSession()
            ws_url = await self._page_websocket()
            ws = await self._http.ws_connect(ws_url, max_msg_size=0)
            self.page = Page(ws)
            await self.page.send("Runtime.enable")
            return self.page
        except BaseException:
            await self.close()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _page_websocket(self) -> str:
        """The DevTools WebSocket URL of the page, once Chromium lists it."""
        assert self.process is not None and self._http is not None
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as reply:
                    targets: list[dict[str, Any]] = await reply.json()
                for target in targets:
                    if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                        url: str = target["webSocketDebuggerUrl"]
                        return url
            await asyncio.sleep(0.2)
        raise RuntimeError(
            f"Chromium's DevTools did not list the page in {START_LIMIT_S:.0f} s:\n{self.log()}"
        )

    async def close(self) -> None:
        """Close the DevTools connection and kill Chromium's whole process group."""
        try:
            if self.page is not None:
                with contextlib.suppress(Exception):
                    await self.page.close()
            if self._http is not None:
                await self._http.close()
        finally:
            self._kill()  # synchronously, so that a cancelled test still kills Chromium

    def _kill(self) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the renderer, GPU and zygote children too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
