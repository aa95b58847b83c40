"""`sealq run --processes N`: N independent worker processes under one command.

One asyncio process cannot use a second core for P-256: an ECDH open is ~50 us of GIL-free
work wrapped in ~60 us of Python that holds the GIL (parsing, the loop, the handler), so
threads top out near one core. Processes share nothing: each polls, keeps its own key cache
(one KMS Decrypt per kid per process, as with more containers) and shuts down on its own.
The supervisor only starts the children, forwards signals and reports the worst exit code;
what a child runs is passed in (`sealq.worker.app.serve_child`), so this module imports
neither the app nor the CLI.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from sealq.worker.settings import WorkerSettings

Child = Callable[[dict[str, Any]], None]
"""A child's entry point: takes `WorkerSettings.model_dump()` values; must be importable by
name (children are spawned), and should put itself in its own process group."""


def run_processes(settings: WorkerSettings, entry: Child) -> int:
    """Run `settings.processes` children of `entry` until all exit; the worst exit code."""
    context = multiprocessing.get_context("spawn")
    children = []
    for i in range(settings.processes):
        values = settings.model_dump()
        values["processes"] = 1
        if settings.metrics_port:  # one port per process: process i serves port + i
            values["metrics_port"] = settings.metrics_port + i
        children.append(context.Process(target=entry, args=(values,), name=f"sealq-worker-{i}"))
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
