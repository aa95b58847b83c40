"""Building a local AWS stand-in's own virtual environment, once, safely.

ministack pins an older botocore than aiobotocore accepts, and LocalStack needs Python 3.13,
so neither can share the project's environment: each gets a venv of its own under the
stand-in home (a `VenvSpec`), built on first use. Builders of one venv are serialised by a
file lock (pytest-xdist workers, a demo and a test run may race), and a marker written last
makes a half-finished build start over instead of being used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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
    # A LocalStack licence would make it try to activate Pro over the network.
    "LOCALSTACK_AUTH_TOKEN",
    "LOCALSTACK_API_KEY",
    "ACTIVATE_PRO",
)


class StandInError(SealqError, RuntimeError):
    """The stand-in could not be installed, started, reset or reached."""


def default_home() -> Path:
    """The home dir when none is given: $SEALQ_STANDIN_HOME, else the user cache."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sealq" / "standin"


@dataclass(frozen=True)
class VenvSpec:
    """One stand-in's private venv: what goes in it and how to tell it is usable."""

    name: str
    """The venv dir under the home; key it by version so a bump builds a fresh one."""
    packages: tuple[str, ...]
    exe: str
    """The file (relative to the venv) callers run; it must exist after the install."""
    check: str
    """Python code run in the new venv; fail here, not at first start, if an import is broken."""
    python: str = sys.executable
    """The interpreter that builds the venv."""


MINISTACK = VenvSpec(
    name=f"ministack-{MINISTACK_VERSION}",
    packages=_PACKAGES,
    exe="bin/ministack",
    check="import ministack.app, cryptography.hazmat.primitives",
)


def _marker_text(spec: VenvSpec) -> str:
    return "\n".join(spec.packages) + "\n"


def _is_complete(venv: Path, spec: VenvSpec) -> bool:
    """True only for a venv whose install ran to the end (the marker is written last)."""
    marker = venv / _MARKER_NAME
    try:
        recorded = marker.read_text(encoding="utf-8")
    except OSError:
        return False
    # The venv's python is a symlink to the interpreter that built it; if that
    # interpreter went away the venv is dead even though the marker is there.
    return (
        recorded == _marker_text(spec)
        and (venv / spec.exe).is_file()
        and (venv / "bin" / "python").exists()
    )


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSAFE_CHILD_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def _install_lock(home: Path, name: str) -> Iterator[None]:
    """Serialise installers of one venv (pytest-xdist workers, a demo and a test run at once)."""
    with (home / f".install-{name}.lock").open("a") as fh:
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
    """Return the ministack executable, building its private venv on first use."""
    return ensure_venv(home, MINISTACK) / MINISTACK.exe


def ensure_venv(home: Path | None, spec: VenvSpec) -> Path:
    """Return the venv ``<home>/<spec.name>``, building it on first use.

    A marker written after a successful install makes this idempotent and cheap;
    an interrupted install leaves no marker, so the next call wipes the half-built
    venv and starts over.
    """
    root = (home if home is not None else default_home()).expanduser().resolve()
    venv = root / spec.name
    if _is_complete(venv, spec):
        return venv
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StandInError(
            f"cannot create the stand-in home {root}: {exc}. Point {HOME_ENV} at a writable directory."
        ) from exc
    log_path = root / f"install-{spec.name}.log"
    with _install_lock(root, spec.name):
        if _is_complete(venv, spec):  # another process finished while we waited
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        python = str(venv / "bin" / "python")
        try:
            with log_path.open("wb") as log:
                _run_logged([spec.python, "-m", "venv", str(venv)], log)
                _run_logged(
                    [
                        python,
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        *spec.packages,
                    ],
                    log,
                )
                _run_logged([python, "-c", spec.check], log)
        except (OSError, subprocess.SubprocessError) as exc:
            raise StandInError(
                f"installing {' '.join(spec.packages)} into {venv} failed ({exc}). "
                f"Check that PyPI is reachable with pip (proxy / PIP_INDEX_URL) and that "
                f"'{spec.python} -m venv' works (Debian: apt-get install python3-venv); "
                f"the next call retries from scratch. Full log: {log_path}\n"
                f"--- log tail ---\n{log_tail(log_path)}"
            ) from exc
        if not (venv / spec.exe).is_file():
            raise StandInError(
                f"pip finished but {venv / spec.exe} is missing; delete {venv} and retry. Log: {log_path}"
            )
        tmp = venv / (_MARKER_NAME + ".tmp")
        tmp.write_text(_marker_text(spec), encoding="utf-8")
        tmp.replace(venv / _MARKER_NAME)
    return venv
