"""A local AWS stand-in (ministack) for the integration tests and the demo.

ministack serves SQS, KMS and S3 on one HTTP port. It runs in a virtual environment of its
own (sealq.demo.standin_install builds it on first use), always as a subprocess bound to
127.0.0.1 only.

    with StandIn() as aws:
        boto3.client("sqs", endpoint_url=aws.endpoint_url, ...)

`python -m sealq.demo.standin [--backend localstack]` runs one in the foreground for manual
use; sealq.demo.standin_localstack adds LocalStack, a second, stricter backend.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from sealq.demo.standin_install import (
    HOME_ENV,
    MINISTACK_VERSION,
    StandInError,
    child_env,
    default_home,
    ensure_installed,
    log_tail,
)
from sealq.demo.standin_process import (
    HOST,
    die_with_parent_hook,
    free_port,
    prune_logs,
    request,
    signal_group,
)

__all__ = [
    "HOME_ENV",
    "MINISTACK_VERSION",
    "StandIn",
    "StandInError",
    "default_home",
    "ensure_installed",
]

REGION = "us-east-1"
HEALTH_PATH = "/_ministack/health"
RESET_PATH = "/_ministack/reset"
_STALE_LOG_S = 24 * 3600.0
_PORT_ATTEMPTS = 3


class StandIn:
    """One ministack subprocess on a free 127.0.0.1 port; a context manager.

    It runs in its own process group with its output in ``<home>/logs``, so a
    test run's terminal stays clean and a Ctrl-C aimed at pytest does not kill
    it mid-test; stop() (also registered with atexit) ends it by PID.
    Another emulator subclasses it and overrides the hooks below the class attributes
    (sealq.demo.standin_localstack.LocalStack).
    """

    backend = "ministack"
    health_path = HEALTH_PATH

    def install(self) -> Path:
        """Install if needed (cheap once done); the executable to launch."""
        return ensure_installed(self._home)

    def _command(self, exe: Path) -> list[str]:
        return [str(exe)]

    def _child_env(self, port: int, run_dir: Path) -> dict[str, str]:
        return {
            "GATEWAY_PORT": str(port),
            "BIND_HOST": HOST,
            "MINISTACK_HOST": HOST,
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "PERSIST_STATE": "0",
            "S3_PERSIST": "0",
            # Keep its pid file and any scratch state out of the shared /tmp.
            "TMPDIR": str(run_dir),
            "STATE_DIR": str(run_dir / "state"),
            "S3_DATA_DIR": str(run_dir / "s3"),
            # Never let it reach a Docker daemon: at boot it reaps containers
            # it believes are orphans, which could be someone else's.
            "DOCKER_HOST": f"unix://{run_dir / 'no-docker.sock'}",
        }

    def __init__(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._home = (home if home is not None else default_home()).expanduser().resolve()
        self._fixed_port = port
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._run_dir: Path | None = None

    def __repr__(self) -> str:
        state = f"pid={self.pid} {self._url()}" if self._proc else "stopped"
        return f"<{type(self).__name__} {state}>"

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def home(self) -> Path:
        return self._home

    @property
    def pid(self) -> int | None:
        """PID of the emulator process (also its process group id) while started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        self._require_started()
        assert self._port is not None
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` — the one endpoint for SQS, KMS and S3."""
        self._require_started()
        return self._url()

    @property
    def log_path(self) -> Path | None:
        """The current (or last) run's log; kept after stop for post-mortems."""
        return self._log_path

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """Environment that points boto3/aiobotocore at this stand-in with dummy creds.

        Clearing AWS_PROFILE, AWS_SESSION_TOKEN or per-service endpoint overrides
        is the caller's business; NO_PROXY is extended so a proxy never sees the
        loopback traffic.
        """
        self._require_started()
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
        hosts = [h for h in no_proxy.split(",") if h.strip()]
        for host in (HOST, "localhost"):
            if host not in hosts:
                hosts.append(host)
        return {
            "AWS_ENDPOINT_URL": self._url(),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",  # the emulator accepts any dummy secret
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": ",".join(hosts),
            "no_proxy": ",".join(hosts),
        }

    def start(self) -> StandIn:
        """Install if needed, launch, and return once the health endpoint answers."""
        if self._proc is not None:
            raise StandInError(f"stand-in already started (pid {self._proc.pid})")
        exe = self.install()
        logs = self._home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        prune_logs(logs, _STALE_LOG_S)
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._fixed_port or free_port()
            proc = self._launch(exe, port, logs / f"{self.backend}-{port}.log")
            # Registered before the wait so even a failed start cannot leak.
            atexit.register(self.stop)
            try:
                self._wait_healthy(proc, port)
                return self
            except StandInError:
                log_text = log_tail(logs / f"{self.backend}-{port}.log")
                self.stop()
                # The free-port probe races other processes; the emulator refuses a
                # taken port up front, so just try another one.
                if "already in use" in log_text.lower() and attempt < attempts:
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, exe: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
        run_dir = self._home / "run" / str(port)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        env = child_env(self._child_env(port, run_dir))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                self._command(exe),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=run_dir,
                start_new_session=True,
                preexec_fn=die_with_parent_hook(),
            )
        self._proc, self._port = proc, port
        self._log_path, self._run_dir = log_path, run_dir
        return proc

    def _wait_healthy(self, proc: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                raise StandInError(self._failure(f"{self.backend} exited with code {code}"))
            try:
                status, _body = request(port, "GET", self.health_path, timeout=2.0)
                if status == 200:
                    return
                last_error = f"HTTP {status}"
            except OSError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                within = f"within {self._startup_timeout:.0f}s ({last_error})"
                raise StandInError(self._failure(f"{self.backend} did not become healthy {within}"))
            time.sleep(0.05)

    def _failure(self, what: str) -> str:
        log = self._log_path
        tail = log_tail(log) if log is not None else ""
        return f"{what}; log {log}:\n--- log tail ---\n{tail}"

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after stop_timeout, reap. Idempotent."""
        proc = self._proc
        atexit.unregister(self.stop)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                # Until we reap the leader its PID (= the group id) cannot be
                # reused, so signalling the group here only reaches our processes.
                signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=self._stop_timeout)
        finally:
            self._proc = None
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
                self._run_dir = None

    def reset(self) -> None:
        """Drop every queue, key and bucket, so a test can start from empty."""
        self._require_started()
        try:
            status, body = request(self.port, "POST", RESET_PATH, timeout=30.0)
        except OSError as exc:
            raise StandInError(self._failure(f"reset failed: {exc}")) from exc
        if status != 200:
            raise StandInError(self._failure(f"reset answered HTTP {status}: {body[:200]!r}"))

    def health(self) -> dict[str, object]:
        """The parsed health document (services and their state)."""
        self._require_started()
        status, body = request(self.port, "GET", self.health_path, timeout=5.0)
        if status != 200:
            raise StandInError(self._failure(f"health answered HTTP {status}"))
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise StandInError(f"unexpected health document: {body[:200]!r}")
        return doc

    def _url(self) -> str:
        return f"http://{HOST}:{self._port}"

    def _require_started(self) -> None:
        if self._proc is None:
            raise StandInError("stand-in is not started; call start() or use it as a context")


if __name__ == "__main__":
    # The foreground runner lives with the backend choice (ministack or LocalStack), which
    # imports this module; run it by name so the two modules do not import each other.
    import runpy

    runpy.run_module("sealq.demo.standin_localstack", run_name="__main__", alter_sys=True)
