"""Run the threekit-sandbox in a subprocess (for tests, demos and local development)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from threekit_pipeline.sandbox.threekit_server import TOKEN_ENV

log = logging.getLogger(__name__)

_LISTENING_RE = re.compile(r"threekit-sandbox listening on http://(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d+)")


class SandboxStartError(RuntimeError):
    """The sandbox process did not come up (its log file has the details)."""


class ThreekitSandboxProcess:
    """A threekit-sandbox server process on a loopback port.

    The first start picks a free port (unless ``port`` is given) and keeps it, so
    :meth:`restart` comes back at the same address with the same data directory. The token
    reaches the child through the environment, never its command line.
    """

    def __init__(
        self,
        data_dir: Path,
        token: str,
        org_id: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        fail_rate: float = 0.0,
        rate_limit: int = 0,
        latency_ms: int = 0,
        drop_rate: float = 0.0,
        seed: int | None = None,
        job_delay_ms: int = 200,
        log_file: Path | None = None,
        detailed_errors: bool = False,
        pricebooks: list[tuple[str, list[str]]] | None = None,
        sync_partial: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.token = token
        self.org_id = org_id
        self.host = host
        self.port: int = port or 0
        self.fail_rate = fail_rate
        self.rate_limit = rate_limit
        self.latency_ms = latency_ms
        self.drop_rate = drop_rate
        self.seed = seed
        self.job_delay_ms = job_delay_ms
        self.detailed_errors = detailed_errors
        self.seed_pricebooks = pricebooks
        self.sync_partial = sync_partial
        self.log_file = (
            Path(log_file) if log_file else self.data_dir.parent / f"{self.data_dir.name}-sandbox.log"
        )
        self._proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._announced = threading.Event()
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"ThreekitSandboxProcess(base_url={self.base_url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "threekit_pipeline.sandbox.threekit_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--org-id",
            self.org_id,
            "--data-dir",
            str(self.data_dir),
            "--fail-rate",
            str(self.fail_rate),
            "--rate-limit",
            str(self.rate_limit),
            "--latency-ms",
            str(self.latency_ms),
            "--drop-rate",
            str(self.drop_rate),
            "--job-delay-ms",
            str(self.job_delay_ms),
        ]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        if self.detailed_errors:
            command.append("--detailed-errors")
        if self.sync_partial:
            command.append("--sync-partial")
        for name, currencies in self.seed_pricebooks or ():
            command += ["--pricebook", f"{name}:{','.join(currencies)}"]
        return command

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _LISTENING_RE.search(line)
            if match and not self._announced.is_set():
                self.port = int(match.group("port"))
                self._announced.set()

    def start(self, timeout: float = 20) -> ThreekitSandboxProcess:
        """Spawn the server and wait until it answers its healthcheck."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, TOKEN_ENV: self.token, "PYTHONUNBUFFERED": "1"}
        self._announced.clear()
        with open(self.log_file, "ab") as log_handle:
            self._proc = subprocess.Popen(
                self._command(),
                stdout=subprocess.PIPE,
                stderr=log_handle,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
            )
        threading.Thread(target=self._read_stdout, args=(self._proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        try:
            while not self._announced.wait(0.05):
                if self._proc.poll() is not None:
                    raise SandboxStartError(
                        f"threekit-sandbox exited with code {self._proc.returncode}; see {self.log_file}"
                    )
                if time.monotonic() > deadline:
                    raise SandboxStartError(
                        f"threekit-sandbox did not start within {timeout} s; see {self.log_file}"
                    )
            while True:
                try:
                    if (
                        requests.get(f"{self.base_url}/api/products/healthcheck", timeout=2).status_code
                        == 200
                    ):
                        break
                except requests.RequestException:
                    pass
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise SandboxStartError(f"threekit-sandbox is not answering; see {self.log_file}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        log.info("threekit-sandbox running at %s (pid %d)", self.base_url, self._proc.pid)
        return self

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the server, wait, kill it if it does not stop; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("threekit-sandbox pid %d ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        self.returncode = proc.returncode

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the server process to exit; returns its exit code."""
        if self._proc is None:
            return self.returncode
        code = self._proc.wait(timeout)
        self.returncode = code
        return code

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._session.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> None:
        """Change fault settings at runtime (``fail_rate``, ``rate_limit``, ``latency_ms``,
        ``drop_rate``, ``seed``)."""
        self._admin("POST", "/_sandbox/faults", json=faults)

    def stats(self) -> dict:
        """Request counts by route and record counts."""
        return self._admin("GET", "/_sandbox/stats")

    def items(self) -> list[dict]:
        """Every item with its full stored content."""
        return self._admin("GET", "/_sandbox/items")

    def pricebooks(self) -> list[dict]:
        """The org's pricebooks (``[{id, name, currencies}...]``)."""
        return self._admin("GET", f"/api/orgs/{self.org_id}/pricebooks", params={"all": "true"})["pricebooks"]

    def add_pricebooks(self, books: list[dict]) -> list[dict]:
        """Add pricebooks ``[{name, currencies}]`` (Threekit makes them in its UI only)."""
        return self._admin("POST", "/_sandbox/pricebooks", json=books)["pricebooks"]

    def render_stand_in(self, asset_ids: list[str] | None = None, tags: list[str] | None = None) -> list[dict]:
        """Give matching items a stub PNG layer, standing in for a render job (see the sandbox)."""
        return self._admin("POST", "/_sandbox/render", json={"assetIds": asset_ids, "tags": tags})["layers"]

    def render_faults(self, faults: dict[str, str]) -> None:
        """Make render jobs of these assets ``fail`` or ``hang`` (never finish)."""
        self._admin("POST", "/_sandbox/render-faults", json=faults)

    def reset(self) -> None:
        """Wipe all state."""
        self._admin("POST", "/_sandbox/reset")

    def __enter__(self) -> ThreekitSandboxProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
