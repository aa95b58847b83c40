"""Building the local AWS stand-in's own virtual environment, once, safely.

ministack pins an older botocore than aiobotocore accepts, so it cannot share the project's
environment: it gets a venv of its own under the stand-in home, built on first use. Builders
are serialised by a file lock (pytest-xdist workers, a demo and a test run may race), and a
marker written last makes a half-finished build start over instead of being used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sealq.errors import SealqError

MINISTACK_VERSION = "1.5.33"
"""Bumping this builds a fresh venv beside the old one: the venv dir is keyed by it."""

HOME_ENV = "SEALQ_STANDIN_HOME"
"""Where the stand-in keeps its venv, logs and run dirs; default ~/.cache/sealq/standin."""

# cryptography is ministack's optional dependency, but KMS key pairs need it.
_PACKAGES = (f"ministack=={MINISTACK_VERSION}", "cryptography")
_MARKER_NAME = ".sealq-installed"
_INSTALL_TIMEOUT_S = 900.0
_LOG_TAIL_BYTES = 4000

# Variables that would make the stand-in's own Python import the caller's packages
# or make pip install somewhere other than the venv.
_UNSAFE_CHILD_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "__PYVENV_LAUNCHER__",
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "LOCALSTACK_PERSISTENCE",
)


class StandInError(SealqError, RuntimeError):
    """The stand-in could not be installed, started, reset or reached."""


def default_home() -> Path:
    """The home dir when none is given: $SEALQ_STANDIN_HOME, else the user cache."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sealq" / "standin"


def _venv_dir(home: Path) -> Path:
    return home / f"ministack-{MINISTACK_VERSION}"


def _marker_text() -> str:
    return "\n".join(_PACKAGES) + "\n"


def _is_complete(venv: Path, exe: Path) -> bool:
    """True only for a venv whose install ran to the end (the marker is written last)."""
    marker = venv / _MARKER_NAME
    try:
        recorded = marker.read_text(encoding="utf-8")
    except OSError:
        return False
    # The venv's python is a symlink to the interpreter that built it; if that
    # interpreter went away the venv is dead even though the marker is there.
    return recorded == _marker_text() and exe.is_file() and (venv / "bin" / "python").exists()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSAFE_CHILD_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def _install_lock(home: Path) -> Iterator[None]:
    """Serialise installers (pytest-xdist workers, a demo and a test run at once)."""
    with (home / ".install.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<log unreadable: {exc}>"


def _run_logged(cmd: list[str], log: IO[bytes]) -> None:
    log.write(("\n$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
        check=True,
        timeout=_INSTALL_TIMEOUT_S,
    )


def ensure_installed(home: Path | None = None) -> Path:
    """Return the ministack executable, building its private venv on first use.

    The venv lives in ``<home>/ministack-<version>``. A marker written after a
    successful install makes this idempotent and cheap; an interrupted install
    leaves no marker, so the next call wipes the half-built venv and starts over.
    """
    root = (home if home is not None else default_home()).expanduser().resolve()
    venv = _venv_dir(root)
    exe = venv / "bin" / "ministack"
    if _is_complete(venv, exe):
        return exe
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StandInError(
            f"cannot create the stand-in home {root}: {exc}. Point {HOME_ENV} at a writable directory."
        ) from exc
    log_path = root / "install.log"
    with _install_lock(root):
        if _is_complete(venv, exe):  # another process finished while we waited
            return exe
        if venv.exists():
            shutil.rmtree(venv)
        python = str(venv / "bin" / "python")
        try:
            with log_path.open("wb") as log:
                _run_logged([sys.executable, "-m", "venv", str(venv)], log)
                _run_logged(
                    [
                        python,
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        *_PACKAGES,
                    ],
                    log,
                )
                # Fail here, not at first start, if a dependency is unusable.
                _run_logged(
                    [python, "-c", "import ministack.app, cryptography.hazmat.primitives"],
                    log,
                )
        except (OSError, subprocess.SubprocessError) as exc:
            raise StandInError(
                f"installing {' '.join(_PACKAGES)} into {venv} failed ({exc}). "
                f"Check that PyPI is reachable with pip (proxy / PIP_INDEX_URL) and that "
                f"'{sys.executable} -m venv' works (Debian: apt-get install python3-venv); "
                f"the next call retries from scratch. Full log: {log_path}\n"
                f"--- log tail ---\n{log_tail(log_path)}"
            ) from exc
        if not exe.is_file():
            raise StandInError(f"pip finished but {exe} is missing; delete {venv} and retry. Log: {log_path}")
        tmp = venv / (_MARKER_NAME + ".tmp")
        tmp.write_text(_marker_text(), encoding="utf-8")
        tmp.replace(venv / _MARKER_NAME)
    return exe
