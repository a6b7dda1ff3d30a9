"""The StyleGAN2 family: the GAN family with StyleGAN2's networks (`models.stylegan2`), its
training recipe as defaults (Adam(0.002, β = (0, 0.99)), lazy R1 every 16 D steps, G's EMA
with a 10 kimg half-life and ramp-up, style mixing with probability 0.9, lazy path-length
regularisation every 4 G steps) and truncation (`eval.truncation`, ψ) when sampling."""

import functools

import jax.numpy as jnp
import ml_collections

from genimg_jax import config as config_lib
from genimg_jax.core.family import Rules
from genimg_jax.core.state import GANState
from genimg_jax.families.gan.family import GANFamily
from genimg_jax.families.stylegan2 import networks as stylegan2


class StyleGAN2Family(GANFamily):
    """StyleGAN2 (Karras et al. 2020) in the one GAN step (`steps.gan`)."""

    def __init__(self):
        super().__init__(stylegan2.build)

    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        super().add_defaults(c)
        c.model.latent_dim = 512
        c.model.w_dim = 512  # the intermediate latent w
        c.model.mapping_layers = 8
        c.model.channel_max = 512  # channels at a size: min(width · image_size / size, this)
        c.model.mbstd_group = 4  # D's minibatch standard deviation over groups of this many
        c.train.g_lr = c.train.d_lr = 0.002
        c.train.b1, c.train.b2 = 0.0, 0.99
        c.train.r1_gamma = 10.0  # StyleGAN2's FFHQ value; smaller for small images (configs)
        c.train.r1_interval = 16
        c.train.ema_decay = 0.0
        c.train.ema_kimg = 10.0
        c.train.ema_rampup = 0.05
        c.train.style_mixing = 0.9  # probability that a batch's ws switch to w(z₂) at a layer
        c.train.pl_weight = 2.0  # path-length regularisation's weight; 0 = off
        c.train.pl_interval = 4  # ... on every N-th G step, times N
        c.train.pl_decay = 0.01  # ... the EMA rate of its target, the mean path length
        c.eval.truncation = 1.0  # ψ of sampled ws: w_avg + ψ·(w − w_avg); 1 = none

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        return super().rules(config) | {
            "model.w_dim": config_lib.positive(),
            "model.mapping_layers": config_lib.positive(),
            "model.channel_max": config_lib.positive(),
            "model.mbstd_group": config_lib.positive(),
            "train.style_mixing": config_lib.in_unit(closed_top=True),
            "train.pl_weight": config_lib.at_least(0),
            "train.pl_interval": config_lib.positive(),
            "train.pl_decay": config_lib.in_unit(closed_top=True),
            "eval.truncation": config_lib.at_least(0),
        }

    def create_state(self, config: ml_collections.ConfigDict, rng) -> GANState:
        state = super().create_state(config, rng)
        if config.train.pl_weight <= 0:
            return state
        # the path-length target (the EMA of the mean path length) travels with G
        hparams = {**state.g.hparams, "pl_mean": jnp.float32(0.0)}
        return state.replace(g=state.g.replace(hparams=hparams))

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        return functools.partial(
            super().make_train_step(config, axis_name),
            pl_weight=config.train.pl_weight,
            pl_interval=config.train.pl_interval,
            pl_decay=config.train.pl_decay,
        )
