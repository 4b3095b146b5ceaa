"""An aiohttp application served on a local port for the length of an ``async with`` block: what the
tests' stand-in servers (the scripted LLM, the speech server) share."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web


class LocalApp:
    """A base for a server that builds its ``web.Application`` in ``__aenter__`` and calls ``_serve``."""

    _runner: web.AppRunner | None = None

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        """Serve ``app`` on ``host``:``port`` (0: a free port); the port it got."""
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        return int(self._runner.addresses[0][1])

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
