"""The config's vocabulary below the families: the values shared fields may take, and the rule
helpers every family's `rules` are written with. `genimg_jax.config` assembles whole configs
and validates them with these."""

import math
from collections.abc import Callable, Iterable
from typing import Any

import ml_collections

from genimg_jax.core.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
USER_DATA = ("folder", "arrays")  # data.name values that read the user's images at data.path
SUPPORTED_IMAGE_SIZES = (16, 28, 32, 64, 128, 256)  # `models.common.spatial_plan` derives blocks
COMPUTE_DTYPES = ("float32", "bfloat16")
CONV_GRADIENTS = ("auto", "custom", "autodiff")  # `models.layers.custom_gradients_here`
STRATEGIES = ("jit", "pmap")
MULTIHOST = ("auto", "yes", "no")

Rule = tuple[Callable[[Any], bool], str]  # (check, what is allowed)
Rules = dict[str, Rule]  # field -> rule


def one_of(allowed: Iterable[Any]) -> Rule:
    allowed = sorted(allowed)
    return (lambda v: v in allowed), f"one of {allowed}"


def positive() -> Rule:
    return (lambda v: v > 0 and math.isfinite(v)), "a finite number > 0"


def at_least(lo: float) -> Rule:
    return (lambda v: v >= lo and math.isfinite(v)), f"a finite number >= {lo}"


def count() -> Rule:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), "an integer >= 0"


def in_unit(closed_top: bool = False) -> Rule:
    if closed_top:
        return (lambda v: 0 <= v <= 1), "a number in [0, 1]"
    return (lambda v: 0 <= v < 1), "a number in [0, 1)"


def flag() -> Rule:
    return one_of((False, True))


def text(allowed: str) -> Rule:
    return (lambda v: isinstance(v, str)), allowed


def get(config: ml_collections.ConfigDict, field: str) -> Any:
    """The value of a dotted `field`; ConfigError when it is missing."""
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"config field {field} is missing; add it (see genimg_jax/config.py)")
        node = node[part]
    return node


def check(config: ml_collections.ConfigDict, rules: Rules) -> None:
    """Raises ConfigError naming the first field that breaks its rule, its value and the fix."""
    for field, (ok, allowed) in rules.items():
        value = get(config, field)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"config field {field}={value!r} is invalid: use {allowed}")
