"""`sealq run --processes N`: N independent worker processes under one command.

One asyncio process cannot use a second core for P-256: an ECDH open is ~50 us of GIL-free
work wrapped in ~60 us of Python that holds the GIL (parsing, the loop, the handler), so
threads top out near one core. Processes share nothing: each polls, keeps its own key cache
(one KMS Decrypt per kid per process, as with more containers) and shuts down on its own.
The supervisor only forwards signals and reports the worst exit code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from types import FrameType
from typing import Any

from sealq.errors import SealqError
from sealq.worker.handler import load_handler
from sealq.worker.logs import configure
from sealq.worker.settings import WorkerSettings


def _child(values: dict[str, Any]) -> None:
    # Own process group: a terminal's Ctrl-C reaches only the supervisor, which forwards it
    # exactly once, so a single Ctrl-C is never mistaken for the "exit at once" second signal.
    os.setpgrp()
    from sealq.cli.run import serve

    settings = WorkerSettings(**values)
    configure(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(serve(settings, load_handler(settings.handler)))
    except SealqError as exc:
        print(f"sealq: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


def run_processes(settings: WorkerSettings) -> int:
    context = multiprocessing.get_context("spawn")
    children = []
    for i in range(settings.processes):
        values = settings.model_dump()
        values["processes"] = 1
        if settings.metrics_port:  # one port per process: process i serves port + i
            values["metrics_port"] = settings.metrics_port + i
        children.append(context.Process(target=_child, args=(values,), name=f"sealq-worker-{i}"))
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(timeout=0.2)
            if child.exitcode not in (None, 0) and not stopping:
                # One worker died on its own: stop the rest so the container restarts whole.
                forward(signal.SIGTERM, None)
    codes = [child.exitcode or 0 for child in children]
    return max(codes, key=abs) if any(codes) else 0
