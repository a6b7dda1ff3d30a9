"""genimg_jax: train GANs and VAEs with JAX/Flax. Importing the package sets the XLA:CPU flag
it relies on (`xla_flags.py`) before JAX starts a backend."""

from genimg_jax import xla_flags as _xla_flags

_xla_flags.apply_defaults()
