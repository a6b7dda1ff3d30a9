"""Whole configs: the fields every experiment shares plus those of the family it selects
(`base_config`), its `:quick` variant, loading from a file or a run's config.json, and validation
of every field before anything is built or compiled (`validate`)."""

import importlib.util
import json
import os
import re
import types
from typing import Any

import ml_collections

from genimg_jax import families
from genimg_jax.core.errors import ConfigError
from genimg_jax.core.fields import (
    COMPUTE_DTYPES,
    CONV_GRADIENTS,
    MULTIHOST,
    OPTIMIZERS,
    SCHEDULES,
    STRATEGIES,
    SUPPORTED_IMAGE_SIZES,
    USER_DATA,
    Rules,
    at_least,
    check,
    flag,
    in_unit,
    one_of,
    positive,
    text,
)


def base_config(family: str, family_module: str = "") -> ml_collections.ConfigDict:
    """Fields every config shares (model, data, train, parallel, eval), and those of the model family registered as `family` (e.g.
    "dcgan", "conv_vae"; a family of your own code: `family_module` names the module that
    registers it, see genimg_jax.core.family)."""
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

    c.data, c.train, c.parallel, c.eval = _data(), _train(), _parallel(), _eval()
    try:
        families.get(family, family_module).add_defaults(c)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return c


def _data() -> ml_collections.ConfigDict:
    data = ml_collections.ConfigDict()
    data.name = "bundled_mnist"
    data.data_dir = ""  # "" -> $TFDS_DATA_DIR or ~/tensorflow_datasets
    data.train_split = "train"
    data.eval_split = "test"
    data.image_size = 32
    data.channels = 1
    data.binarize = False  # True: pixels thresholded at the middle of the value range ({0, 1})
    # your own images: data.name "folder" (a folder of image files) or "arrays" (.npz/.npy) at
    data.path = ""  # data.path, prepared once (README, "Data")
    data.labels_from_folders = False  # folder: first-level subfolder names are class labels
    data.skip_bad_files = False  # folder: skip unreadable images (listed beside the data)
    return data


def _train() -> ml_collections.ConfigDict:
    train = ml_collections.ConfigDict()
    train.steps = 1000
    train.batch_size = 64
    train.log_every = 50
    train.checkpoint_every = 500
    # steps per call of the compiled program (lax.scan over stacked batches): k > 1 saves the
    # host's per-step work at millisecond steps; k divides train.steps and the log, checkpoint
    # and evaluation intervals (README, "Multi-device, multi-host, GPU and TPU")
    train.steps_per_dispatch = 1
    train.keep_checkpoints = 3
    train.optimizer = "adam"
    train.b1 = 0.9
    train.b2 = 0.999
    train.weight_decay = 0.0
    train.schedule = "constant"
    train.warmup_steps = 0
    train.grad_clip_norm = 0.0  # 0 = off
    train.skip_nonfinite = False  # True: skip updates with non-finite gradients (counted)
    train.compute_dtype = "float32"  # or "bfloat16": activations; params/optimizer stay f32
    # the stacks' strided convs: "auto" (custom VJPs of stride-1 convs on XLA:CPU, where they
    # are faster; autodiff's elsewhere), "custom" or "autodiff" (models/layers.py); same values
    train.conv_gradients = "auto"
    return train


def _parallel() -> ml_collections.ConfigDict:
    parallel = ml_collections.ConfigDict()
    parallel.strategy = "jit"  # or "pmap"
    parallel.num_devices = 0  # 0 = every device of every process
    parallel.multihost = "auto"  # "yes": jax.distributed from the cluster; "auto": if SLURM/MPI
    parallel.coordinator_address = ""  # multi-host: "host:port" of process 0; "" = from env
    parallel.num_processes = 0  # 0 = from the environment
    parallel.process_id = -1  # -1 = from the environment
    return parallel


def _eval() -> ml_collections.ConfigDict:
    eval = ml_collections.ConfigDict()
    eval.every = 500  # sample grids and scores every N steps and at the end
    eval.num_samples = 64  # images in the sample grids
    eval.scores = True  # score the model at each evaluation (below); False: grids only
    eval.examples = 1000  # test images scored (VAE), or samples vs test images (GAN)
    eval.best_metric = ""  # keep the best checkpoint by this score; families set their own
    return eval


def shrink_for_tests(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:quick` variant: tiny networks (the family's `shrink_for_tests`) and a dozen steps
    that still cross every interval."""
    c.model.latent_dim = 4
    families.of(c).shrink_for_tests(c)
    c.train.steps = 12
    c.train.batch_size = 16
    c.train.log_every = 4
    c.train.checkpoint_every = 6
    c.eval.every = 6
    c.eval.num_samples = 16
    c.eval.scores = False  # tests that score turn it on
    c.eval.examples = 64
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
# Validation: a table of (field, check, what is allowed), the shared fields' and the family's.


def _rules(config: ml_collections.ConfigDict) -> Rules:
    family = families.of(config)
    t = config.train
    intervals = (t.steps, t.log_every, t.checkpoint_every, config.eval.every)
    return {
        "seed": ((lambda v: v >= 0), "an integer >= 0"),
        "model.latent_dim": positive(),
        "data.name": ((lambda v: bool(v)), "a TFDS data set name, e.g. 'bundled_mnist'"),
        "data.image_size": one_of(SUPPORTED_IMAGE_SIZES),
        "data.channels": one_of((1, 3)),
        "data.binarize": flag(),
        "data.path": (
            lambda v: isinstance(v, str) and (bool(v) or config.data.name not in USER_DATA),
            f"the folder or .npz/.npy of your images when data.name is one of {list(USER_DATA)}",
        ),
        "data.labels_from_folders": flag(),
        "data.skip_bad_files": flag(),
        "train.steps": positive(),
        "train.batch_size": positive(),
        "train.log_every": positive(),
        "train.checkpoint_every": positive(),
        "train.steps_per_dispatch": (
            lambda k: isinstance(k, int) and k > 0 and not any(n % k for n in intervals),
            "a positive divisor of train.steps, log_every, checkpoint_every and eval.every",
        ),
        "train.keep_checkpoints": positive(),
        "train.optimizer": one_of(OPTIMIZERS),
        "train.b1": in_unit(),
        "train.b2": in_unit(),
        "train.weight_decay": at_least(0),
        "train.schedule": one_of(SCHEDULES),
        "train.warmup_steps": at_least(0),
        "train.grad_clip_norm": at_least(0),
        "train.compute_dtype": one_of(COMPUTE_DTYPES),
        "train.conv_gradients": one_of(CONV_GRADIENTS),
        "parallel.strategy": one_of(STRATEGIES),
        "parallel.num_devices": at_least(0),
        "parallel.multihost": one_of(MULTIHOST),
        "parallel.num_processes": at_least(0),
        "parallel.process_id": at_least(-1),
        "deterministic": flag(),
        "compile_cache_dir": text("a directory, 'auto' (the default place) or '' (no cache)"),
        "train.skip_nonfinite": flag(),
        "eval.every": positive(),
        "eval.num_samples": positive(),
        "eval.scores": flag(),
        "eval.examples": at_least(2),
        "eval.best_metric": one_of(("", *family.score_modes(config.data))),
    } | family.rules(config)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field; raises ConfigError naming the first bad field, its value and the fix."""
    try:
        rules = _rules(config)
    except ValueError as e:  # an unknown family
        raise ConfigError(str(e)) from None
    check(config, rules)
    return config
