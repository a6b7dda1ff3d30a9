"""Pure step functions, and the per-family training step the loop compiles once."""

import functools
from collections.abc import Callable

import jax
import ml_collections

from genimg_jax import losses, models
from genimg_jax.steps.gan import d_step, g_step
from genimg_jax.steps.gan import train_step as gan_train_step
from genimg_jax.steps.vae import vae_step

__all__ = ["d_step", "g_step", "make_train_step", "vae_step"]


def make_train_step(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Callable:
    """(state, batch, key) -> (state, metrics) for the configured family. The step's randomness
    is `fold_in(key, state.step)`, so it is a function of (seed, step) alone. `axis_name`: the
    device axis when the step runs under pmap (see `genimg_jax.parallel`)."""
    kind = models.get_family(config.model.family).kind
    if kind == "gan":
        step = functools.partial(
            gan_train_step,
            loss=losses.GAN_LOSSES[config.train.loss],
            latent_dim=config.model.latent_dim,
            ema_decay=config.train.ema_decay,
            d_steps=config.train.d_steps,
            num_classes=config.model.get("num_classes", 0),
            r1_gamma=config.train.get("r1_gamma", 0.0),
            gp_weight=config.train.get("gp_weight", 0.0),
            axis_name=axis_name,
        )
    else:
        step = functools.partial(
            vae_step,
            reconstruction=losses.RECONSTRUCTION_LOSSES[config.train.reconstruction],
            latent_dim=config.model.latent_dim,
            axis_name=axis_name,
        )

    def train_step(state, batch, key):
        return step(state, batch, jax.random.fold_in(key, state.step))

    return train_step
