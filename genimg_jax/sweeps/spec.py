"""Sweeps are data: a sweep expands to a numbered list of config overrides (disentanglement_lib's
`h.product`), so any member can be re-run alone by its index.

    sweep = product(axis("model.beta", [1.0, 4.0]), axis("seed", [0, 1]))
    # [{"model.beta": 1.0, "seed": 0}, {"model.beta": 1.0, "seed": 1}, {"model.beta": 4.0, ...}]

A config file offers its sweep next to its config: `get_sweep(arg=None) -> Sweep`.
"""

import copy
import itertools
import json
import math
import os
import re
from typing import Any, NamedTuple

import ml_collections

from genimg_jax import config as config_lib
from genimg_jax.core.errors import ConfigError

Scalar = bool | int | float | str
Overrides = dict[str, Scalar]
Sweep = list[Overrides]

# {"config": "path[:arg]", "overrides": {...}, "members": [{"index", "name", "overrides"}]}
MANIFEST = "sweep.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")


class Member(NamedTuple):
    """One member of a sweep: its position, its overrides, its folder name."""

    index: int
    overrides: Overrides
    name: str


# --------------------------------------------------------------------------------------------
# Combinators.


def axis(field: str, values: list[Scalar]) -> Sweep:
    """One field taking each of `values` in turn: [{field: v0}, {field: v1}, ...]."""
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise ConfigError(
            f"sweep axis field {field!r} is invalid: use a dotted path like 'train.lr'"
        )
    values = list(values)
    if not values:
        raise ConfigError(f"sweep axis {field} has no values: give at least one")
    for v in values:
        if not isinstance(v, Scalar):
            raise ConfigError(
                f"sweep axis {field} value {v!r} is a {type(v).__name__}: use bool, int, float "
                "or str"
            )
    return [{field: v} for v in values]


def product(*sweeps: Sweep) -> Sweep:
    """Every combination of the sweeps' members, the last sweep varying fastest."""
    _check_disjoint(sweeps, "product")
    return [_merge(combo) for combo in itertools.product(*sweeps)]


def zipped(*sweeps: Sweep) -> Sweep:
    """The i-th members of the sweeps merged, for sweeps of equal length."""
    lengths = [len(s) for s in sweeps]
    if len(set(lengths)) > 1:
        raise ConfigError(f"zipped sweeps have lengths {lengths}: give sweeps of equal length")
    _check_disjoint(sweeps, "zipped")
    return [_merge(combo) for combo in zip(*sweeps)]


def chain(*sweeps: Sweep) -> Sweep:
    """The sweeps one after another."""
    return [dict(overrides) for s in sweeps for overrides in s]


def _merge(parts: tuple[Overrides, ...]) -> Overrides:
    out: Overrides = {}
    for part in parts:
        out |= part
    return out


def _check_disjoint(sweeps: tuple[Sweep, ...], how: str) -> None:
    """Combined sweeps must set different fields, else one would silently overwrite the other."""
    seen: dict[str, int] = {}
    for i, s in enumerate(sweeps):
        for field in {f for overrides in s for f in overrides}:
            if field in seen:
                raise ConfigError(
                    f"{how} of sweeps sets field {field} in sweeps {seen[field]} and {i}: "
                    "combine each field once (use chain for alternatives)"
                )
            seen[field] = i


# --------------------------------------------------------------------------------------------
# Members and their names.


def format_value(value: Scalar) -> str:
    """A compact, filesystem-safe spelling of a value: 4.0 -> '4', 3e-4 -> '0.0003'."""
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value) and abs(value) < 1e16:
            text = str(int(value))
        else:
            text = repr(value)
    else:
        text = str(value)
    return _UNSAFE.sub("-", text)


def member_name(index: int, overrides: Overrides) -> str:
    """'003_beta=4_lr=0.001_seed=1': the index and each field's last path component = value."""
    parts = [f"{index:03d}"]
    parts += [f"{field.split('.')[-1]}={format_value(v)}" for field, v in overrides.items()]
    return "_".join(parts)


def members(sweep: Sweep) -> list[Member]:
    """The sweep's members numbered 0..K-1 in order."""
    return [Member(i, dict(o), member_name(i, o)) for i, o in enumerate(sweep)]


def member_dir(sweep_workdir: str, member: Member) -> str:
    """The workdir of one member inside the sweep's workdir."""
    return os.path.join(sweep_workdir, member.name)


def is_finished(member_dir: str, steps: int) -> bool:
    """Whether the member's summary.json says it reached `steps`."""
    try:
        with open(os.path.join(member_dir, "summary.json")) as f:
            return int(json.load(f)["step"]) >= steps
    except (OSError, ValueError, KeyError, TypeError):
        return False


# --------------------------------------------------------------------------------------------
# Applying overrides to a config.


def apply(config: ml_collections.ConfigDict, overrides: Overrides) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted field set; unknown fields and wrong types raise."""
    out = copy.deepcopy(config)
    for field, value in overrides.items():
        parent, leaf = _parent_of(out, field)
        old = parent[leaf]
        parent[leaf] = _coerce(field, old, value)
    return out


def _parent_of(config: ml_collections.ConfigDict, field: str) -> tuple[Any, str]:
    """The ConfigDict holding `field` and its last name; ConfigError if the path is unknown."""
    node, parts = config, field.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(
                f"sweep sets unknown config field {field} ({where} is a value, not a group): "
                f"set {where} itself"
            )
        if part not in node:
            raise ConfigError(
                f"sweep sets unknown config field {field} (no '{part}' in {where or 'the config'})"
                f": use one of {sorted(node.keys())}"
            )
        if depth < len(parts) - 1:
            node = node[part]
    if isinstance(node[parts[-1]], ml_collections.ConfigDict):
        raise ConfigError(f"sweep sets {field}, which is a group of fields: set one of its leaves")
    return node, parts[-1]


def _coerce(field: str, old: Any, value: Any) -> Any:
    """`value` in the type of the field's current value (an int may go into a float field)."""
    if old is None or type(value) is type(old):
        return value
    if isinstance(old, float) and type(value) is int:
        return float(value)
    raise ConfigError(
        f"sweep sets config field {field}={value!r} of type {type(value).__name__}, but the "
        f"field is of type {type(old).__name__} (now {old!r}): give a {type(old).__name__} value"
    )


# --------------------------------------------------------------------------------------------
# Loading a config file's sweep.


def split_config_arg(config_path: str) -> tuple[str, str | None]:
    """'configs/x.py:quick' -> ('configs/x.py', 'quick'); 'configs/x.py' -> (..., None)."""
    path, sep, arg = config_path.rpartition(":")
    if sep and path.endswith(".py") and "/" not in arg and "\\" not in arg:
        return path, arg or None
    return config_path, None


def load(
    config_path: str, overrides: Overrides | None = None
) -> tuple[ml_collections.ConfigDict, list[Member]]:
    """The base config (with `overrides` for every member, the command line's) and the sweep's
    members of `path.py[:arg]`; every member is validated. An override of a field the sweep
    itself varies raises ConfigError."""
    path, arg = split_config_arg(config_path)
    module = config_lib.import_file(path)
    if not callable(getattr(module, "get_sweep", None)):
        raise ConfigError(
            f"config file {path} has no get_sweep(arg=None): define it to return a list of "
            "override dicts, e.g. product(axis('model.beta', [1.0, 4.0]), axis('seed', [0, 1]))"
        )
    base = module.get_config(arg)
    sweep = module.get_sweep(arg)
    if not isinstance(sweep, list) or not sweep or not all(isinstance(o, dict) for o in sweep):
        raise ConfigError(
            f"{path}:get_sweep({arg!r}) returned {type(sweep).__name__}: return a non-empty list "
            "of override dicts, e.g. product(axis('model.beta', [1.0, 4.0]), axis('seed', [0, 1]))"
        )
    found = members(sweep)
    varied = sorted({field for m in found for field in m.overrides} & set(overrides or {}))
    if varied:
        raise ConfigError(
            f"--config.{varied[0]} overrides a field the sweep of {config_path} varies; "
            "change the sweep's axis instead, or drop the override"
        )
    base = apply(base, overrides or {})
    for member in found:
        try:
            config_lib.validate(apply(base, member.overrides))
        except ConfigError as e:
            raise ConfigError(f"sweep member {member.name} of {config_path}: {e}") from None
    return base, found


# --------------------------------------------------------------------------------------------
# The manifest the sweep runner writes and the report reads.


def write_manifest(
    sweep_workdir: str, config_path: str, found: list[Member], overrides: Overrides | None = None
) -> str:
    """Writes `sweep.json` (config path, the overrides every member takes, and the members)
    into the sweep workdir; returns its path."""
    os.makedirs(sweep_workdir, exist_ok=True)
    path = os.path.join(sweep_workdir, MANIFEST)
    manifest = {
        "config": config_path,
        "overrides": dict(overrides or {}),
        "members": [{"index": m.index, "name": m.name, "overrides": m.overrides} for m in found],
    }
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
    return path


def read_manifest(sweep_workdir: str) -> list[Member] | None:
    """The members listed in the sweep workdir's `sweep.json`, or None without one."""
    path = os.path.join(sweep_workdir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            rows = json.load(f)["members"]
        return [Member(int(r["index"]), dict(r["overrides"]), str(r["name"])) for r in rows]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"{path} is not a sweep manifest ({e!r}): delete it or rewrite it with "
            "genimg_jax.sweeps.spec.write_manifest"
        ) from None
