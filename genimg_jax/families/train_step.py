"""Pure step functions, and the per-family training step the loop compiles once."""

from collections.abc import Callable

import jax
import ml_collections

from genimg_jax.core import family
from genimg_jax.families.gan.step import d_step, g_step
from genimg_jax.families.vae.step import vae_step

__all__ = ["d_step", "g_step", "make_train_step", "vae_step"]


def make_train_step(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Callable:
    """(state, batch, key) -> (state, metrics) for the configured family. The step's randomness
    is `fold_in(key, state.step)`, so it is a function of (seed, step) alone. `axis_name`: the
    device axis when the step runs under pmap (see `genimg_jax.parallel`)."""
    step = family.of(config).make_train_step(config, axis_name)

    def train_step(state, batch, key):
        return step(state, batch, jax.random.fold_in(key, state.step))

    return train_step
