"""genimg_jax: train GANs and VAEs with JAX/Flax. Importing the package sets the XLA:CPU flag
it relies on (`xla_flags.py`) before JAX starts a backend, and keeps freed host memory for the
next step instead of faulting it in again (`host_memory.py`: glibc's malloc settings, and
single-device CPU programs run on the calling thread, whose heap can keep large buffers).

The entry points a notebook needs (README, "Python API") are imported on first use:
`load_config`, `train`, `create_state`, `make_train_step`, `batches`, `draw_samples`."""

import importlib

from genimg_jax import host_memory as _host_memory
from genimg_jax import xla_flags as _xla_flags

_API = {  # name -> (module, attribute)
    "load_config": ("genimg_jax.config", "from_file"),
    "train": ("genimg_jax.trainer", "train_and_evaluate"),
    "create_state": ("genimg_jax.state", "create_state"),
    "make_train_step": ("genimg_jax.steps", "make_train_step"),
    "batches": ("genimg_jax.trainer", "batches_for"),
    "draw_samples": ("genimg_jax.sample", "draw"),
}
__all__ = ["batches", "create_state", "draw_samples", "load_config", "make_train_step", "train"]


def __getattr__(name: str):
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'genimg_jax' has no attribute {name!r}")


_xla_flags.apply_defaults()
if _host_memory.keep_freed_memory():
    _host_memory.run_programs_on_calling_thread()
