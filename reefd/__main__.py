"""The `reefd` command and the composition root.

`build(config)` is the one place that wires backend, policy, scheduler, executor,
engine and server together; everything else receives its dependencies. `main()`
parses flags, builds the daemon, handles SIGTERM/SIGINT and talks to systemd.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass

from reefd import __version__
from reefd.backends import make_device, pick_backend
from reefd.backends.device import Device
from reefd.config import (
    BACKENDS,
    POLICIES,
    PREEMPT_FLAGS,
    DaemonConfig,
    default_socket_path,
    load,
)
from reefd.engine import Engine, monotonic_us
from reefd.errors import ReefError
from reefd.executor import Executor
from reefd.interference.daemon import load_hook
from reefd.scheduler import make_policy
from reefd.scheduler.policy import Policy
from reefd.scheduler.scheduler import Scheduler
from reefd.sdnotify import Notifier
from reefd.server import Server

log = logging.getLogger("reefd")


@dataclass
class Daemon:
    config: DaemonConfig
    device: Device
    engine: Engine
    server: Server
    backend_reason: str
    policy: Policy
    interference_note: str = ""

    def start(self) -> threading.Thread:
        self.device.start(self.engine.wake)
        shape = self.device.shape()
        use_device = getattr(self.policy, "use_device", None)
        if shape is not None and use_device is not None:
            use_device(shape)  # reef's padding, orion's SM need: the open device
        self.server.start()
        thread = threading.Thread(
            target=self.engine.run, name="reefd-engine", daemon=True
        )
        thread.start()
        return thread

    def stop(self, grace_ms: int) -> None:
        self.engine.begin_shutdown(grace_ms)
        self.engine.wait_stopped(grace_ms / 1000 + 30)
        self.server.stop("daemon shut down")
        self.device.close()


def build(config: DaemonConfig) -> Daemon:
    """Wire the daemon from its config; performs no I/O."""
    backend, reason = pick_backend(config.backend, config.gpu_index)
    device = make_device(backend, config)
    note = ""
    options = {}
    if config.policy == "reef":
        hook, note = load_hook(config.interference_model, config.resolved_state_dir())
        options["interference"] = hook
    policy = make_policy(config.policy, **options)
    scheduler = Scheduler(policy, be_inflight_cap=config.be_inflight_cap)
    executor = Executor(device, monotonic_us)
    server = Server(
        config,
        {"backend": backend, "policy": config.policy, "version": __version__},
        prepare=device.prepare,
    )
    engine = Engine(
        device,
        scheduler,
        executor,
        server.post,
        policy_name=config.policy,
        default_slo_ms=config.default_slo_ms,
        max_models_per_client=config.max_models_per_client,
        max_queued_per_client=config.max_queued_per_client,
    )
    server.attach(engine.submit)
    return Daemon(config, device, engine, server, reason, policy, note)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reefd",
        description=(
            "Serve real-time (RT) and best-effort (BE) DNN inference from many "
            "processes on one GPU. Clients connect over a local ZeroMQ ipc socket "
            "(see `reef status`, `reef demo` and reefd.clients)."
        ),
        epilog=(
            "Settings come from defaults, then --config FILE (TOML, keys as the "
            "long flags with underscores, optionally under [reefd]), then flags. "
            "SIGTERM finishes in-flight work (up to --shutdown-grace-ms), tells "
            "every client the daemon is gone, and exits 0."
        ),
    )
    p.add_argument("--version", action="version", version=f"reefd {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument(
        "--socket",
        dest="socket_path",
        metavar="PATH",
        help=f"ipc socket path (default {default_socket_path()}, per --gpu)",
    )
    p.add_argument("--backend", choices=BACKENDS, help="device backend (default auto)")
    p.add_argument(
        "--policy", choices=POLICIES, help="scheduling policy (default reef)"
    )
    p.add_argument("--gpu", dest="gpu_index", type=int, metavar="N", help="GPU index")
    p.add_argument(
        "--be-inflight-cap", type=int, metavar="N", help="BE launches in flight"
    )
    p.add_argument(
        "--heartbeat-ms", type=int, metavar="MS", help="client heartbeat period"
    )
    p.add_argument(
        "--heartbeat-timeout-ms",
        type=int,
        metavar="MS",
        help="silence that marks a client dead",
    )
    p.add_argument(
        "--interference-model",
        metavar="PATH",
        help="reef policy: interference model file, or 'off' (default: the state "
        "directory's interference.joblib if `reef-profile train` wrote one)",
    )
    p.add_argument(
        "--default-slo-ms",
        type=float,
        metavar="MS",
        help="SLO of RT models without one",
    )
    p.add_argument(
        "--shutdown-grace-ms",
        type=int,
        metavar="MS",
        help="time to finish work on SIGTERM",
    )
    p.add_argument(
        "--torch-threads", type=int, metavar="N", help="cpu backend intra-op threads"
    )
    p.add_argument(
        "--preempt-flag",
        choices=PREEMPT_FLAGS,
        help="cuda backend: preempt flag in mapped host or device memory",
    )
    p.add_argument(
        "--device-memory-limit-bytes",
        type=int,
        metavar="N",
        help="cuda backend: device memory budget (0 = free memory less 5%%)",
    )
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    overrides = {
        k: v for k, v in vars(args).items() if k not in ("config", "log_level")
    }
    try:
        config = load(args.config, **overrides)
        daemon = build(config)
        log.info("backend: %s", daemon.backend_reason)
        if daemon.interference_note:
            log.info("%s", daemon.interference_note)
        daemon.start()
    except ReefError as exc:
        print(f"reefd: {exc}", file=sys.stderr)
        return 2
    return serve(daemon)


def serve(daemon: Daemon) -> int:
    """Run until SIGTERM/SIGINT; keep the systemd watchdog fed while the engine
    steps."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    notifier = Notifier()
    log.info("serving on %s with %s", daemon.server.address, daemon.device.describe())
    notifier.ready(f"serving {daemon.config.socket_path} on {daemon.device.describe()}")
    period_s = notifier.watchdog_interval_s or 1.0
    while not stop.wait(period_s):
        if notifier.watchdog_interval_s:
            stalled_us = monotonic_us() - daemon.engine.last_step_us
            if stalled_us < 2 * period_s * 1e6:
                notifier.watchdog()
            else:
                log.error(
                    "engine loop stalled for %d ms; not feeding the watchdog",
                    stalled_us // 1000,
                )
    notifier.stopping()
    log.info("stopping")
    daemon.stop(daemon.config.shutdown_grace_ms)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
