"""Config defaults shared by every experiment, and validation of every field before anything is
built or compiled."""

import importlib.util
import json
import math
import os
import re
import types
from collections.abc import Callable, Iterable
from typing import Any

import ml_collections

from genimg_jax.core import family as family_lib
from genimg_jax.core.errors import ConfigError
from genimg_jax.models.common import COMPUTE_DTYPES, SUPPORTED_IMAGE_SIZES
from genimg_jax.runtime import parallel

OPTIMIZERS = ("adam", "adamw")

SCHEDULES = ("constant", "cosine")
USER_DATA = ("folder", "arrays")  # data.name values that read the user's images at data.path


def base_config(family: str, family_module: str = "") -> ml_collections.ConfigDict:
    """Fields every config shares, and those of the model family registered as `family` (e.g.
    "dcgan", "conv_vae"; a family of your own code: `family_module` names the module that
    registers it, see genimg_jax.family)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.deterministic = True  # XLA's deterministic-ops flag on GPU (CPU always is)
    # compiled programs kept on disk for the next run: "auto" (JAX's own setting, else
    # ~/.cache/genimg_jax/xla), a directory, or "" (off); see compile_cache.py
    c.compile_cache_dir = "auto"

    c.model = ml_collections.ConfigDict()
    c.model.family = family
    c.model.family_module = family_module  # the module registering a family defined outside
    c.model.latent_dim = 64

    c.data = ml_collections.ConfigDict()
    c.data.name = "bundled_mnist"
    c.data.data_dir = ""  # "" -> $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.channels = 1
    c.data.binarize = False  # True: pixels thresholded at the middle of the value range ({0, 1})
    # your own images: data.name "folder" (a folder of image files) or "arrays" (.npz/.npy) at
    c.data.path = ""  # data.path, prepared once (README, "Your own images")
    c.data.labels_from_folders = False  # folder: first-level subfolder names are class labels
    c.data.skip_bad_files = False  # folder: skip unreadable images (listed beside the data)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 64
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.optimizer = "adam"
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.weight_decay = 0.0
    c.train.schedule = "constant"
    c.train.warmup_steps = 0
    c.train.grad_clip_norm = 0.0  # 0 = off
    c.train.skip_nonfinite = False  # True: skip updates with non-finite gradients (counted)
    c.train.compute_dtype = "float32"  # or "bfloat16": activations; params/optimizer stay f32

    c.parallel = ml_collections.ConfigDict()
    c.parallel.strategy = "jit"  # or "pmap"
    c.parallel.num_devices = 0  # 0 = every device of every process
    c.parallel.multihost = "auto"  # "yes": jax.distributed from the cluster; "auto": if SLURM/MPI
    c.parallel.coordinator_address = ""  # multi-host: "host:port" of process 0; "" = from env
    c.parallel.num_processes = 0  # 0 = from the environment
    c.parallel.process_id = -1  # -1 = from the environment

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 500  # sample grids and scores every N steps and at the end
    c.eval.num_samples = 64  # images in the sample grids
    c.eval.scores = True  # score the model at each evaluation (below); False: grids only
    c.eval.examples = 1000  # test images scored (VAE), or samples vs test images (GAN)

    try:
        family_lib.get(family, family_module).add_defaults(c)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return c


def shrink_for_tests(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:quick` variant: tiny networks and a dozen steps that still cross every interval."""
    c.model.latent_dim = 4
    for width in ("g_width", "d_width", "width"):
        if width in c.model:
            c.model[width] = 8
    if "w_dim" in c.model:
        c.model.w_dim = 8
    for hidden in ("hidden", "disc_hidden"):
        if hidden in c.model:
            c.model[hidden] = 16
    if "disc_layers" in c.model:
        c.model.disc_layers = 2
    c.train.steps = 12
    c.train.batch_size = 16
    c.train.log_every = 4
    c.train.checkpoint_every = 6
    c.eval.every = 6
    c.eval.num_samples = 16
    c.eval.scores = False  # tests that score turn it on
    c.eval.examples = 64
    if "iwae_k" in c.eval:
        c.eval.iwae_k = 8
    return c


def import_file(path: str) -> types.ModuleType:
    """The config file at `path` imported as a module of its own; it must define
    `get_config(arg=None)`."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist: give a path like configs/x.py")
    name = "genimg_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path} has no get_config(arg=None): define it")
    return module


def from_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file at `path`, e.g. `from_file("configs/vae_mnist.py",
    "quick")`, as `--config=configs/vae_mnist.py:quick` gives it on the command line."""
    return import_file(path).get_config(arg)


def load_saved(path: str) -> ml_collections.ConfigDict:
    """A run's saved config.json laid over today's defaults, so that a run written before a field
    existed resumes with that field's default."""
    with open(path) as f:
        saved = json.load(f)
    model = saved.get("model", {})
    config = base_config(model.get("family", ""), model.get("family_module", ""))
    _merge(config, saved)
    return config


def saved_config_hint(config: ml_collections.ConfigDict, workdir: str) -> str:
    """For a checkpoint that does not fit: which fields differ from the run's saved config."""
    saved = os.path.join(workdir, "config.json")
    if not os.path.exists(saved):
        return ""
    changed = differences(load_saved(saved), config)
    return f" (fields that differ from {saved}: {'; '.join(changed)})" if changed else ""


def differences(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> list[str]:
    """'field: old -> new' for every leaf field whose value differs (or exists in one only)."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [
        f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _merge(config: ml_collections.ConfigDict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and key in config:
            _merge(config[key], value)
        else:
            with config.ignore_type():
                config[key] = value


# --------------------------------------------------------------------------------------------
# Validation: a table of (field, check, what is allowed).


def one_of(allowed: Iterable[Any]) -> tuple[Callable[[Any], bool], str]:
    allowed = sorted(allowed)
    return (lambda v: v in allowed), f"one of {allowed}"


def positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v > 0 and math.isfinite(v)), "a finite number > 0"


def at_least(lo: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= lo and math.isfinite(v)), f"a finite number >= {lo}"


def count() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), "an integer >= 0"


def in_unit(closed_top: bool = False) -> tuple[Callable[[Any], bool], str]:
    if closed_top:
        return (lambda v: 0 <= v <= 1), "a number in [0, 1]"
    return (lambda v: 0 <= v < 1), "a number in [0, 1)"


def _rules(config: ml_collections.ConfigDict) -> family_lib.Rules:
    family = family_lib.of(config)
    return {
        "seed": ((lambda v: v >= 0), "an integer >= 0"),
        "model.latent_dim": positive(),
        "data.name": ((lambda v: bool(v)), "a TFDS data set name, e.g. 'bundled_mnist'"),
        "data.image_size": one_of(SUPPORTED_IMAGE_SIZES),
        "data.channels": one_of((1, 3)),
        "data.binarize": one_of((False, True)),
        "data.path": (
            lambda v: isinstance(v, str) and (bool(v) or config.data.name not in USER_DATA),
            f"the folder or .npz/.npy of your images when data.name is one of {list(USER_DATA)}",
        ),
        "data.labels_from_folders": one_of((False, True)),
        "data.skip_bad_files": one_of((False, True)),
        "train.steps": positive(),
        "train.batch_size": positive(),
        "train.log_every": positive(),
        "train.checkpoint_every": positive(),
        "train.keep_checkpoints": positive(),
        "train.optimizer": one_of(OPTIMIZERS),
        "train.b1": in_unit(),
        "train.b2": in_unit(),
        "train.weight_decay": at_least(0),
        "train.schedule": one_of(SCHEDULES),
        "train.warmup_steps": at_least(0),
        "train.grad_clip_norm": at_least(0),
        "train.compute_dtype": one_of(COMPUTE_DTYPES),
        "parallel.strategy": one_of(parallel.STRATEGIES),
        "parallel.num_devices": at_least(0),
        "parallel.multihost": one_of(parallel.MULTIHOST),
        "parallel.num_processes": at_least(0),
        "parallel.process_id": at_least(-1),
        "deterministic": one_of((False, True)),
        "compile_cache_dir": (
            (lambda v: isinstance(v, str)),
            "a directory, 'auto' (the default place) or '' (no cache)",
        ),
        "train.skip_nonfinite": one_of((False, True)),
        "eval.every": positive(),
        "eval.num_samples": positive(),
        "eval.scores": one_of((False, True)),
        "eval.examples": at_least(2),
        "eval.best_metric": one_of(("", *family.score_modes(config.data))),
    } | family.rules(config)


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"config field {field} is missing; add it (see genimg_jax/config.py)")
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field; raises ConfigError naming the first bad field, its value and the fix."""
    try:
        rules = _rules(config)
    except ValueError as e:  # an unknown family
        raise ConfigError(str(e)) from None
    for field, (ok, allowed) in rules.items():
        value = _get(config, field)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"config field {field}={value!r} is invalid: use {allowed}")
    return config
