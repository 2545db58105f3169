"""Config loading: defaults, TOML, overrides, and errors that name the value."""

from __future__ import annotations

import pytest

from reefd.config import default_socket_path, load
from reefd.errors import ConfigError


def test_defaults_are_valid_and_socket_follows_gpu(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert load(None).socket_path == "/run/user/1000/reefd/0/reefd.sock"
    assert load(None, gpu_index=3).socket_path == default_socket_path(3)
    assert default_socket_path(3).endswith("/reefd/3/reefd.sock")


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "reefd.toml"
    path.write_text(
        '[reefd]\npolicy = "fifo"\nbe_inflight_cap = 4\ndefault_slo_ms = 20\n'
    )
    cfg = load(str(path), be_inflight_cap=8, policy=None)
    assert (
        cfg.policy == "fifo" and cfg.be_inflight_cap == 8 and cfg.default_slo_ms == 20.0
    )


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"policy": "lottery"}, "policy='lottery'"),
        ({"backend": "tpu"}, "backend='tpu'"),
        ({"be_inflight_cap": 0}, "be_inflight_cap=0 must be > 0"),
        ({"heartbeat_ms": 500, "heartbeat_timeout_ms": 600}, "at least twice"),
        ({"torch_threads": 0}, "torch_threads=0"),
        ({"be_inflight_cap": "2"}, "be_inflight_cap='2' must be int"),
        ({"socket_path": "/tmp/" + "x" * 120}, "longer than the 100 bytes"),
    ],
)
def test_bad_values_are_named(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load(None, **overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("policy = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\]"):
        load(str(unknown))
