"""genimg_jax: train GANs and VAEs with JAX/Flax. Importing the package sets the XLA:CPU flag
it relies on (`xla_flags.py`) before JAX starts a backend, and keeps freed host memory for the
next step instead of faulting it in again (`host_memory.py`)."""

from genimg_jax import host_memory as _host_memory
from genimg_jax import xla_flags as _xla_flags

_xla_flags.apply_defaults()
_host_memory.keep_freed_memory()
