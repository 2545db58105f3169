"""What to profile: zoo models and users' model factories, at given batches.

Owns turning the command line's model choices into `Target`s: `--zoo NAMES`
(bench/zoo.py models, with `--override key=value` for reduced variants),
`--model FILE.py:FACTORY` (a user's function returning `(module,
example_inputs)`, called with `batch=` when it takes that argument, else
called once and its inputs' dim 0 resized), and `--batch 1,8` lists. Every
mistake is a ConfigError whose message names the bad value.

Imports the standard library, torch and reefd.errors; bench.zoo is imported
lazily, only for `--zoo`.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from reefd.errors import ConfigError

Built = tuple[nn.Module, tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class Target:
    """One model to profile, buildable at any batch size."""

    name: str
    """Human name: the zoo name (with its overrides) or FILE.py:FACTORY."""
    source: str
    """'zoo:<name>' or 'file:<absolute path>:<factory>'."""
    make: Callable[[int], Built] = field(compare=False, repr=False)
    """batch -> (eval-mode module, example inputs with that batch)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    natural_batch: int = 1
    """The batch to profile when no --batch is given."""


# --- batches and overrides ----------------------------------------------------------


def parse_batches(text: str) -> tuple[int, ...]:
    """'1,8' -> (1, 8); ConfigError on anything but distinct positive ints."""
    parts = [p.strip() for p in text.split(",")]
    batches: list[int] = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(
                f"--batch {text!r}: {part!r} is not a positive integer "
                "(want a list like 1,8)"
            )
        if int(part) in batches:
            raise ConfigError(f"--batch {text!r}: {part} is listed twice")
        batches.append(int(part))
    return tuple(batches)


def _value(text: str) -> Any:
    if "," in text:
        return tuple(_value(v) for v in text.split(",") if v)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(items: Sequence[str]) -> dict[str | None, dict[str, Any]]:
    """['image=64', 'resnet50:layers=1,1,1,1'] -> {None: {image: 64},
    'resnet50': {layers: (1, 1, 1, 1)}} (None: applies to every model)."""
    out: dict[str | None, dict[str, Any]] = {}
    for item in items:
        scope, sep, assignment = item.rpartition(":") if ":" in item else ("", "", item)
        key, eq, value = assignment.partition("=")
        if not eq or not key.strip() or (sep and not scope):
            raise ConfigError(
                f"--override {item!r}: want KEY=VALUE or MODEL:KEY=VALUE "
                "(e.g. image=64 or resnet50:layers=1,1,1,1)"
            )
        out.setdefault(scope or None, {})[key.strip()] = _value(value.strip())
    return out


def _label(name: str, overrides: Mapping[str, Any]) -> str:
    if not overrides:
        return name

    def show(v: Any) -> str:
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    inner = ",".join(f"{k}={show(v)}" for k, v in sorted(overrides.items()))
    return f"{name}[{inner}]"


# --- zoo models -------------------------------------------------------------------


def zoo_module() -> ModuleType:
    """bench.zoo, from the path or else from the checkout beside this package."""
    try:
        from bench import zoo
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "bench" / "zoo.py").is_file():
            raise ConfigError(
                "the model zoo (bench/zoo.py) is not importable here: run "
                "reef-profile from a reefd checkout, or profile your own model "
                "with --model FILE.py:FACTORY"
            ) from None
        sys.path.insert(0, str(root))  # an editable install's checkout root
        from bench import zoo
    return zoo


def zoo_targets(names: str, override_items: Sequence[str] = ()) -> list[Target]:
    """Targets for `--zoo a,b` ('all': every zoo model), checked on the meta
    device so a bad name or override fails before anything is built."""
    zoo = zoo_module()
    wanted = list(zoo.NAMES) if names.strip() == "all" else names.split(",")
    wanted = [n.strip() for n in wanted if n.strip()]
    if not wanted:
        raise ConfigError("--zoo: no model named (e.g. --zoo resnet50,vgg19)")
    if unknown := [n for n in wanted if n not in zoo.NAMES]:
        raise ConfigError(
            f"unknown zoo model {unknown[0]!r}; known: {', '.join(zoo.NAMES)}"
        )
    overrides = parse_overrides(override_items)
    if stray := sorted(k for k in overrides if k is not None and k not in wanted):
        raise ConfigError(
            f"--override names model {stray[0]!r}, which is not profiled here"
        )
    targets = []
    for name in wanted:
        ov = {**overrides.get(None, {}), **overrides.get(name, {})}
        try:
            zoo.build_meta(name, 1, **ov)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"--override for {name}: {exc}") from None
        make = functools.partial(_build_zoo, zoo, name, ov)
        targets.append(Target(_label(name, ov), f"zoo:{name}", make, ov))
    return targets


def _build_zoo(zoo: ModuleType, name: str, ov: dict[str, Any], batch: int) -> Built:
    model, inputs = zoo.build(name, batch=batch, **ov)
    return model, tuple(inputs)


# --- a user's factory --------------------------------------------------------------


def _load_factory(spec: str) -> tuple[Path, str, Callable[..., Any]]:
    path_text, sep, factory = spec.rpartition(":")
    if not sep or not path_text.endswith(".py") or not factory.isidentifier():
        raise ConfigError(
            f"--model {spec!r}: want FILE.py:FACTORY, e.g. --model app.py:make_model"
        )
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--model {spec!r}: no file {path}")
    module_spec = importlib.util.spec_from_file_location(
        f"reef_profile_user_{path.stem}", path
    )
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--model {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error is reported, in one line
        raise ConfigError(
            f"--model {spec!r}: importing {path.name} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise ConfigError(f"--model {spec!r}: {path.name} has no function {factory!r}")
    return path, factory, fn


def _checked(spec: str, result: Any) -> Built:
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise ConfigError(
            f"--model {spec!r}: the factory must return (module, example_inputs), "
            f"got {type(result).__name__}"
        )
    model, inputs = result
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if not isinstance(model, nn.Module) or not isinstance(inputs, tuple | list):
        raise ConfigError(
            f"--model {spec!r}: the factory must return (torch.nn.Module, tuple of "
            f"tensors), got ({type(model).__name__}, {type(inputs).__name__})"
        )
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ConfigError(f"--model {spec!r}: example inputs must be tensors")
    return model.eval(), tuple(inputs)


def rebatch(inputs: Sequence[torch.Tensor], batch: int) -> tuple[torch.Tensor, ...]:
    """`inputs` with `batch` rows along dim 0 (rows repeated cyclically)."""
    out = []
    for i, t in enumerate(inputs):
        if t.dim() == 0 or t.shape[0] == 0:
            raise ConfigError(f"input {i} has no batch dim (dim 0) to resize")
        out.append(t[torch.arange(batch) % t.shape[0]])
    return tuple(out)


def file_target(spec: str, name: str | None = None) -> Target:
    """The target for `--model FILE.py:FACTORY`."""
    path, factory, fn = _load_factory(spec)
    takes_batch = "batch" in inspect.signature(fn).parameters

    def call(**kwargs: Any) -> Built:
        try:
            result = fn(**kwargs)
        except ConfigError:
            raise
        except Exception as exc:  # the user's code: report it in one line
            raise ConfigError(
                f"--model {spec!r}: {factory}() failed: {type(exc).__name__}: {exc}"
            ) from None
        return _checked(spec, result)

    label = name or f"{path.name}:{factory}"
    source = f"file:{path}:{factory}"
    if takes_batch:
        return Target(label, source, lambda batch: call(batch=batch))
    model, inputs = call()
    natural = int(inputs[0].shape[0]) if inputs[0].dim() else 1

    def make(batch: int) -> Built:
        return model, inputs if batch == natural else rebatch(inputs, batch)

    return Target(label, source, make, {}, natural)
