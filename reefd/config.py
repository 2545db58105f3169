"""Daemon configuration: one frozen dataclass, loaded from TOML and CLI flags.

All validation happens in `DaemonConfig.validate`, with errors naming the value.
Imports only the standard library and reefd.errors.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reefd.errors import ConfigError

BACKENDS = ("auto", "cpu", "cuda", "sim")
PREEMPT_FLAGS = ("mapped", "device")
POLICIES = ("reef", "fifo", "exclusive", "streams", "wait", "reset_hq", "orion")


def default_socket_path(gpu_index: int = 0) -> str:
    """`$XDG_RUNTIME_DIR/reefd/<gpu>/reefd.sock`, else /run/reefd for root, else
    /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        base = "/run" if os.geteuid() == 0 else f"/tmp/reefd-{os.getuid()}"
    return str(Path(base) / "reefd" / str(gpu_index) / "reefd.sock")


@dataclass(frozen=True)
class DaemonConfig:
    socket_path: str = ""
    """Path of the ipc socket ('' = the default for gpu_index); its directory's
    owner, group and mode are the access control."""
    backend: str = "auto"
    """Device backend: auto (cuda if a driver and GPU are present, else cpu), cpu,
    cuda, sim."""
    policy: str = "reef"
    """Scheduling policy: reef, or a baseline: fifo, exclusive, streams, wait,
    reset_hq, orion (see README "Policies")."""
    gpu_index: int = 0
    """GPU to serve (PCI bus order)."""
    be_inflight_cap: int = 2
    """Most BE kernel launches queued or running on the device at once."""
    heartbeat_ms: int = 500
    """How often clients must send a heartbeat."""
    heartbeat_timeout_ms: int = 3000
    """A client silent this long is dead: its tasks are cancelled, its models freed."""
    max_message_bytes: int = 2 << 30
    """Largest message accepted (register with weights included)."""
    max_models_per_client: int = 64
    """Most models one client may have registered at once."""
    max_queued_per_client: int = 1024
    """Most unfinished requests one client may have in the daemon."""
    default_slo_ms: float = 100.0
    """SLO for RT models registered without one."""
    shutdown_grace_ms: int = 5000
    """On SIGTERM, how long in-flight work may take to finish before it is failed."""
    torch_threads: int = 1
    """Intra-op threads for the cpu backend. More threads fight the daemon's own
    threads for cores and make RT latency erratic: on 2 cores, small_cnn at 20 req/s
    had p50 13 ms with 2 threads and 2 ms with 1."""
    state_dir: str = ""
    """Where profiles and models live ('' = $STATE_DIRECTORY or
    ~/.local/state/reefd)."""
    interference_model: str = ""
    """reef policy: the interference model file ('' = interference.joblib in the
    state directory if `reef-profile train` wrote one; 'off' = none). With one,
    reef pads with the BE task of lowest predicted RT slowdown and withholds BE
    work whose conservative prediction would miss the RT task's deadline."""
    preempt_flag: str = "mapped"
    """cuda backend: where the preempt flag lives. mapped = page-locked host memory
    the GPU reads over PCIe (a host store takes effect at once); device = device
    memory written in stream order (raised on the RT stream). "mapped" until both
    are measured (docs/gpu-owed.md)."""
    device_memory_limit_bytes: int = 0
    """cuda backend: most device memory for weights and task buffers; 0 = the
    memory free at start less 5 % of the card. Past it, requests fail with a
    clear error instead of the GPU running out."""
    rt_gpu_queue_launches: int = 64
    """cuda backend: most RT launches pushed to the GPU's RT stream and not yet
    finished; more wait in the daemon's host queue."""
    be_gpu_queue_launches: int = 2
    """cuda backend: most BE launches pushed to the GPU's BE stream; only launches
    still in the host queue can be dropped by a reset. With preemptible BE
    kernels a pushed launch that has not started stops at once on the flag."""

    def validate(self) -> DaemonConfig:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"backend={self.backend!r}: choose one of {list(BACKENDS)}"
            )
        if self.policy not in POLICIES:
            raise ConfigError(f"policy={self.policy!r}: choose one of {list(POLICIES)}")
        positive = {
            "be_inflight_cap": self.be_inflight_cap,
            "heartbeat_ms": self.heartbeat_ms,
            "heartbeat_timeout_ms": self.heartbeat_timeout_ms,
            "max_message_bytes": self.max_message_bytes,
            "max_models_per_client": self.max_models_per_client,
            "max_queued_per_client": self.max_queued_per_client,
            "default_slo_ms": self.default_slo_ms,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name}={value} must be > 0")
        if self.gpu_index < 0:
            raise ConfigError(f"gpu_index={self.gpu_index} must be >= 0")
        if self.heartbeat_timeout_ms < 2 * self.heartbeat_ms:
            raise ConfigError(
                f"heartbeat_timeout_ms={self.heartbeat_timeout_ms} must be at least "
                f"twice heartbeat_ms={self.heartbeat_ms}"
            )
        if self.shutdown_grace_ms < 0:
            raise ConfigError(
                f"shutdown_grace_ms={self.shutdown_grace_ms} must be >= 0"
            )
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads={self.torch_threads} must be >= 1")
        if self.preempt_flag not in PREEMPT_FLAGS:
            raise ConfigError(
                f"preempt_flag={self.preempt_flag!r}: choose one of "
                f"{list(PREEMPT_FLAGS)}"
            )
        if self.device_memory_limit_bytes < 0:
            raise ConfigError(
                f"device_memory_limit_bytes={self.device_memory_limit_bytes} must "
                "be >= 0 (0 = free memory at start less 5 % of the card)"
            )
        for name in ("rt_gpu_queue_launches", "be_gpu_queue_launches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.socket_path:
            raise ConfigError("socket_path must not be empty")
        if len(self.socket_path.encode()) > 100:
            raise ConfigError(
                f"socket_path {self.socket_path!r} is longer than the 100 bytes "
                "an ipc socket allows"
            )
        return self

    def resolved_state_dir(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        env = os.environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
        if env:
            return Path(env.split(":")[0])
        xdg = os.environ.get("XDG_STATE_HOME")
        if xdg:
            return Path(xdg) / "reefd"
        return Path.home() / ".local" / "state" / "reefd"


FIELDS = {f.name: f for f in dataclasses.fields(DaemonConfig)}


def load(path: str | None = None, **overrides: Any) -> DaemonConfig:
    """Defaults, then the TOML file (section [reefd] or top level), then overrides.

    Overrides whose value is None are ignored (unset CLI flags).
    """
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {path!r}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {path!r} is not valid TOML: {exc}"
            ) from None
        data = data.get("reefd", data)
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ConfigError(f"config file {path!r}: unknown keys {unknown}")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in values.items():
        _check_type(name, value)
    if not values.get("socket_path"):
        values["socket_path"] = default_socket_path(int(values.get("gpu_index", 0)))
    return DaemonConfig(**values).validate()


def _check_type(name: str, value: Any) -> None:
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}")
    default = FIELDS[name].default
    want = type(default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, want) or isinstance(value, bool) != isinstance(
        default, bool
    ):
        raise ConfigError(f"{name}={value!r} must be {want.__name__}")
