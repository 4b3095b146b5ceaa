"""``parley serve --workers N``: N server processes sharing one port (``SO_REUSEPORT``, the kernel
spreads new connections over them). Processes share nothing but the database: API keys, client
secrets, daily minutes and the audit trail. A session lives in the process that accepted it.

The parent migrates the database once, starts the workers, forwards SIGTERM/SIGINT to them (each
then shuts down gracefully) and exits when they have; if a worker dies, the others are stopped too,
so a supervisor (systemd, Kubernetes) restarts the whole server.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from parley.config import Settings

log = logging.getLogger("parley")


def run_workers(settings: Settings) -> int:
    from parley.store import open_store

    if settings.port == 0:
        log.error("--workers needs a fixed --port: each worker binds the same one")
        return 2
    open_store(settings.database_url, data_dir=settings.data_dir).close()  # migrate once, here
    context = multiprocessing.get_context("spawn")
    fields = settings.model_dump()
    workers: list[BaseProcess] = [
        context.Process(target=_worker, args=(fields, index), name=f"parley-worker-{index}")
        for index in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    log.info("%d workers on port %d: pids %s", len(workers), settings.port, [w.pid for w in workers])
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                _signal(worker, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while any(worker.is_alive() for worker in workers):
        for worker in workers:
            if not worker.is_alive() and worker.exitcode not in (0, None) and not stopping:
                log.error("worker %s exited with %s; stopping the others", worker.name, worker.exitcode)
                failed = True
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return 1 if failed else 0


def _signal(worker: BaseProcess, signum: int) -> None:
    import os

    if worker.pid is not None:
        os.kill(worker.pid, signum)


def _worker(fields: dict[str, Any], index: int) -> None:
    import asyncio

    from parley.cli import serve_async
    from parley.logging_context import configure_logging

    if index > 0:
        fields = {**fields, "sip_port": None}  # one process owns the SIP port (and so its calls)
    settings = Settings(**fields)
    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it forwards SIGTERM
    asyncio.run(serve_async(settings, worker=index))
