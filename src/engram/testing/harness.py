"""Run a real ``engram start`` process for tests and scripts.

    with EngramProcess.start(tmp_path, spaces=["alpha", "beta"]) as srv:
        httpx.get(srv.http_url + "/health")
        srv.kill()            # SIGKILL, like a crash
        srv = srv.restart()   # same data root, new free ports

The process runs ``python -m engram start`` with ``--http-port 0 --grpc-port 0``
in its own data root; readiness is the state file naming *this* pid (written
only once REST is accepting) followed by a successful ``/health/alive``. Extra
settings are passed as ``ENGRAM_*`` environment variables, exactly as an
operator would. stdout/stderr go to files in the data root's parent so they
survive the process and can be asserted on (``srv.logs()``).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..statefile import read_state


class HarnessError(RuntimeError):
    pass


def _limit_files(nofile: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets the child's RLIMIT_NOFILE (soft and hard) to ``nofile``."""
    if nofile is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return apply


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass
class EngramProcess:
    root: Path
    data_dir: Path
    spaces: tuple[str, ...]
    settings: dict[str, Any]
    proc: subprocess.Popen[bytes]
    state: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    module: str = "engram"
    env: dict[str, str] = field(default_factory=dict)
    nofile: int | None = None

    # -- start ------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        root: Path | str,
        spaces: Iterable[str] = (),
        settings: Mapping[str, Any] | None = None,
        *,
        data_dir: Path | str | None = None,
        timeout: float = 30.0,
        extra_args: Iterable[str] = (),
        generation: int = 0,
        module: str = "engram",
        env: Mapping[str, str] | None = None,
        nofile: int | None = None,
    ) -> EngramProcess:
        """Start ``python -m <module> start`` (``module`` lets tests run a patched entry point,
        e.g. ``engram.testing.leaky``; ``env`` adds non-setting environment variables;
        ``nofile`` lowers the child's open-file limit, like ``ulimit -n``)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        data = Path(data_dir) if data_dir is not None else root / "data"
        spaces = tuple(spaces)
        settings = dict(settings or {})
        # The hash embedder unless a test asks for another: real embedding in the background,
        # without loading a 90 MB model (~7 s) into every server a test starts.
        settings.setdefault("embedder", "hash")
        extra_env = dict(env or {})
        penv = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        penv["PYTHONUNBUFFERED"] = "1"
        penv.update(extra_env)
        for key, value in settings.items():
            penv["ENGRAM_" + key.upper()] = _env_value(value)
        if spaces:
            penv["ENGRAM_BOOTSTRAP_SPACES"] = ",".join(spaces)
        state_file = root / f"state-{generation}.json"
        cmd = [sys.executable, "-m", module, "start", "--data-dir", str(data), "--http-port", "0",
               "--grpc-port", "0", "--state-file", str(state_file), *extra_args]
        # The child gets its own copies of the descriptors; ours close once it is started.
        with (
            open(root / f"server-{generation}.out", "wb") as out,
            open(root / f"server-{generation}.log", "wb") as err,
        ):
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=penv, start_new_session=True,
                                    preexec_fn=_limit_files(nofile))
        srv = cls(
            root=root,
            data_dir=data,
            spaces=spaces,
            settings=settings,
            proc=proc,
            generation=generation,
            module=module,
            env=extra_env,
            nofile=nofile,
        )
        srv._wait_ready(state_file, timeout)
        return srv

    def _wait_ready(self, state_file: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"engram exited with {self.proc.returncode} during start-up:\n{self.logs()[-4000:]}"
                )
            state = read_state(state_file)
            if state and state.get("pid") == self.proc.pid:
                self.state = state
                try:
                    # Readiness only: a TLS server's certificate is checked by the tests themselves.
                    unverified = ssl._create_unverified_context() if state.get("tls") else None
                    with urllib.request.urlopen(self.http_url + "/health/alive", timeout=2,
                                                context=unverified) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(delay)
            delay = min(0.1, delay * 1.5)
        self.kill()
        raise HarnessError(f"engram did not become ready within {timeout} s:\n{self.logs()[-4000:]}")

    # -- addresses ----------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_port(self) -> int:
        return int(self.state["http_port"])

    @property
    def grpc_port(self) -> int | None:
        port = self.state.get("grpc_port")
        return int(port) if port else None

    @property
    def http_url(self) -> str:
        scheme = "https" if self.state.get("tls") else "http"
        return f"{scheme}://{self.state.get('host', '127.0.0.1')}:{self.state['http_port']}"

    @property
    def grpc_target(self) -> str:
        return f"{self.state.get('host', '127.0.0.1')}:{self.state['grpc_port']}"

    # -- logs -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.root / f"server-{self.generation}.log"

    @property
    def stdout_path(self) -> Path:
        return self.root / f"server-{self.generation}.out"

    def logs(self) -> str:
        """Everything the server wrote to stderr (JSON log lines) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- stop / kill / restart ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise HarnessError(f"engram did not stop within {timeout} s after SIGTERM") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup of any kind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def restart(self, timeout: float = 30.0, settings: Mapping[str, Any] | None = None) -> EngramProcess:
        """Start a new process on the same data root (after stop() or kill())."""
        if self.proc.poll() is None:
            self.stop()
        return EngramProcess.start(
            self.root,
            self.spaces,
            settings if settings is not None else self.settings,
            data_dir=self.data_dir,
            timeout=timeout,
            generation=self.generation + 1,
            module=self.module,
            env=self.env,
            nofile=self.nofile,
        )

    def __enter__(self) -> EngramProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(HarnessError):
                self.stop(timeout=15)
