"""DaemonProcess: start and stop a real `reefd` daemon as a child process.

Used by `reef demo`, the e2e tests and the bench. Starting waits until the daemon
answers a HELLO; stopping sends SIGTERM and returns the exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reefd.errors import DaemonUnavailable


class DaemonProcess:
    def __init__(
        self,
        socket_path: str,
        *,
        backend: str = "auto",
        policy: str = "reef",
        extra_args: list[str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.args = [
            sys.executable,
            "-m",
            "reefd",
            "--socket",
            socket_path,
            "--backend",
            backend,
            "--policy",
            policy,
            *(extra_args or []),
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, timeout_s: float = 60.0) -> DaemonProcess:
        from reefd.clients.client import Client

        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonUnavailable(
                    f"reefd exited with code {self.proc.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if Path(self.socket_path).exists():
                try:
                    Client(self.socket_path, name="probe", connect_timeout_s=2).close()
                    return self
                except DaemonUnavailable:
                    pass
            time.sleep(0.1)
        self.kill()
        raise DaemonUnavailable(
            f"reefd did not answer on {self.socket_path} within {timeout_s} s"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait, return the exit code (killing it if it hangs)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
