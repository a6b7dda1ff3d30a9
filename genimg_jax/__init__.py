"""genimg_jax: train GANs and VAEs with JAX/Flax. Importing the package, and calling it, changes
nothing in the process; the entry points a notebook needs (README, "Python API") are imported on
first use: `load_config`, `train`, `create_state`, `make_train_step`, `batches`,
`draw_samples`, and `register_family` (README, "Adding a model family"). `setup_runtime(config)`
applies the process-wide settings the `genimg` command applies (CPU tuning, XLA's deterministic
GPU ops, the compilation cache; `runtime/setup.py`), `tune_cpu()` only the CPU tuning: call them
before the first JAX computation."""

import importlib

_API = {  # name -> (module, attribute)
    "load_config": ("genimg_jax.config", "from_file"),
    "train": ("genimg_jax.training.loop", "train_and_evaluate"),
    "create_state": ("genimg_jax.families", "create_state"),
    "make_train_step": ("genimg_jax.families", "make_train_step"),
    "batches": ("genimg_jax.training.member", "train_batches"),
    "draw_samples": ("genimg_jax.cli.sample", "draw"),
    "register_family": ("genimg_jax.core.family", "register"),
    "setup_runtime": ("genimg_jax.runtime.setup", "setup_runtime"),
    "tune_cpu": ("genimg_jax.runtime.setup", "tune_cpu"),
}
__all__ = [
    "batches",
    "create_state",
    "draw_samples",
    "load_config",
    "make_train_step",
    "register_family",
    "setup_runtime",
    "train",
    "tune_cpu",
]


def __getattr__(name: str):
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'genimg_jax' has no attribute {name!r}")
