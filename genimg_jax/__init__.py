"""genimg_jax: train GANs and VAEs with JAX/Flax. Importing the package sets the XLA:CPU flag
it relies on (`xla_flags.py`) before JAX starts a backend, and keeps freed host memory for the
next step instead of faulting it in again (`host_memory.py`: glibc's malloc settings, and
single-device CPU programs run on the calling thread, whose heap can keep large buffers)."""

from genimg_jax import host_memory as _host_memory
from genimg_jax import xla_flags as _xla_flags

_xla_flags.apply_defaults()
if _host_memory.keep_freed_memory():
    _host_memory.run_programs_on_calling_thread()
