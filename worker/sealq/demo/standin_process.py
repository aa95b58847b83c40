"""The stand-in as a process: a free loopback port, plain HTTP to it, a child that dies
with its parent, signals to its process group, and old logs pruned."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def request(port: int, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One HTTP call to the stand-in; http.client so proxy env vars never apply."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook so the kernel SIGTERMs the stand-in if we die without atexit.

    Linux only, and only from the main thread: PR_SET_PDEATHSIG fires when the
    *thread* that forked exits, which for a worker thread would be far too soon.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # parent died before the hook ran
            os._exit(1)

    return hook


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's process group (it leads one); the child alone if that is refused."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def prune_logs(logs: Path, older_than_s: float) -> None:
    cutoff = time.time() - older_than_s
    for old in logs.glob("*-*.log"):  # <backend>-<port>.log
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()
