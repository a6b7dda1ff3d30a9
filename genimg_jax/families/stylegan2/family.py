"""The StyleGAN2 family: the GAN family with StyleGAN2's networks (`networks`), its training
recipe as defaults (Adam(0.002, β = (0, 0.99)), lazy R1 every 16 D steps, G's EMA with a 10
kimg half-life and ramp-up, style mixing with probability 0.9, lazy path-length regularisation
every 4 G steps; as the official code, Adam's learning rate and betas rescaled for the lazy
terms and a conditional G's classes drawn from the data's labels) and truncation
(`eval.truncation`, ψ) when sampling."""

import dataclasses

import jax.numpy as jnp
import ml_collections

from genimg_jax.core import fields
from genimg_jax.core import state as state_lib
from genimg_jax.core.fields import Rules
from genimg_jax.families.gan import step as gan_step
from genimg_jax.families.gan.family import GANFamily
from genimg_jax.families.gan.state import GANState
from genimg_jax.families.stylegan2 import networks


class StyleGAN2Family(GANFamily):
    """StyleGAN2 (Karras et al. 2020) in the one GAN step (`families.gan.step`)."""

    def __init__(self):
        super().__init__(networks.build)

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
            "model.w_dim": fields.positive(),
            "model.mapping_layers": fields.positive(),
            "model.channel_max": fields.positive(),
            "model.mbstd_group": fields.positive(),
            "train.style_mixing": fields.in_unit(closed_top=True),
            "train.pl_weight": fields.at_least(0),
            "train.pl_interval": fields.positive(),
            "train.pl_decay": fields.in_unit(closed_top=True),
            "eval.truncation": fields.at_least(0),
            "model.latent_codes": ((lambda k: k == 0), "0 (StyleGAN2's D has no code head)"),
            "model.latent_continuous": ((lambda c: c == 0), "0 (StyleGAN2's D has no code head)"),
        }

    def shrink_for_tests(self, c: ml_collections.ConfigDict) -> None:
        super().shrink_for_tests(c)
        c.model.w_dim = 8

    def lr_scales(self, config: ml_collections.ConfigDict) -> tuple[float, float]:
        """StyleGAN2's lazy regularisation: a network regularised every N-th update trains at
        lr · N / (N + 1) (its `_lazy_ratios`), as the official code rescales its Adam."""
        return _lazy_ratios(config)

    def make_optimizer(self, config: ml_collections.ConfigDict) -> tuple:
        """G's and D's Adam with β^(N / (N + 1)) for a network regularised every N-th update,
        as the official code (`_lazy_ratios`)."""
        txs = []
        for ratio in _lazy_ratios(config):
            train = ml_collections.ConfigDict(config.train.to_dict())
            train.b1, train.b2 = train.b1**ratio, train.b2**ratio
            txs.append(state_lib.make_optimizer(train))
        return tuple(txs)

    def create_state(self, config: ml_collections.ConfigDict, rng) -> GANState:
        state = super().create_state(config, rng)
        if config.train.pl_weight <= 0:
            return state
        # the path-length target (the EMA of the mean path length) travels with G
        stats = {**state.g.stats, "pl_mean": jnp.float32(0.0)}
        return state.replace(g=state.g.replace(stats=stats))

    def step_spec(self, config: ml_collections.ConfigDict) -> gan_step.GANStep:
        t = config.train
        path_length = (
            gan_step.PathLength(t.pl_weight, t.pl_interval, t.pl_decay) if t.pl_weight > 0 else None
        )
        spec = super().step_spec(config)
        return dataclasses.replace(spec, path_length=path_length, fake_labels="data")


def _lazy_ratios(config: ml_collections.ConfigDict) -> tuple[float, float]:
    """(G's, D's) N / (N + 1) for a lazy regulariser every N-th update (the path-length term,
    R1), 1 where there is none or it runs every update (StyleGAN2-ADA's mb_ratio)."""
    t = config.train
    ratio = lambda on, n: n / (n + 1) if on and n > 1 else 1.0
    return ratio(t.pl_weight > 0, t.pl_interval), ratio(t.r1_gamma > 0, t.r1_interval)
