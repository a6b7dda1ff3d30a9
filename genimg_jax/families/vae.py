"""VAE families: one encoder-decoder module and TrainState, trained by `steps.vae` on images in
[0, 1] with β traced in the state, and scored on test-set likelihood bounds (and, on data with
known factors, disentanglement; `evaluate.scoring.vae_scorer`)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import losses, sampling
from genimg_jax import state as state_lib
from genimg_jax.data import pipeline
from genimg_jax.evaluate import best, scoring
from genimg_jax.family import Family, Rules
from genimg_jax.state import TrainState
from genimg_jax.steps.vae import vae_step

SCORES = {
    "neg_elbo": "min",
    "iwae": "min",
    "neg_elbo_bits_per_dim": "min",
    "iwae_bits_per_dim": "min",
}
DISENTANGLEMENT_SCORES = {
    "mig": "max",
    "dci_disentanglement": "max",
    "dci_completeness": "max",
    "dci_informativeness": "max",
}


class VAEFamily(Family):
    """A VAE whose module `build(config)` returns: `__call__(x, eps) -> (logits, mean,
    logvar)`, `encode(x) -> (mean, logvar)` and `decode(z) -> logits`."""

    value_range = (0.0, 1.0)
    hyperparameters = ("model.beta", "train.lr")

    def __init__(self, build: Callable[[ml_collections.ConfigDict], object]):
        self._build = build

    def build(self, config):
        return self._build(config)

    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        c.model.width = 32
        c.model.hidden = 256
        c.model.beta = 1.0
        c.train.reconstruction = "bernoulli"
        c.train.lr = 1e-3
        c.eval.iwae_k = 100  # importance samples of the IWAE bound
        c.eval.best_metric = "neg_elbo"  # keep the best checkpoint by this score; "" = don't

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        return {
            "model.width": config_lib.positive(),
            "model.hidden": config_lib.positive(),
            "model.beta": config_lib.at_least(0),
            "train.reconstruction": config_lib.one_of(losses.RECONSTRUCTION_LOSSES),
            "train.lr": config_lib.positive(),
            "eval.iwae_k": config_lib.positive(),
        }

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
        vae, tx = state_lib.static_parts(config)
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        eps = jnp.zeros((1, config.model.latent_dim))
        return state_lib.create_train_state(
            vae, tx, config.train.lr, rng, x, eps, beta=config.model.beta
        )

    def apply_hparams(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
        state = state_lib.with_learning_rate(state, config.train.lr)
        return state.replace(hparams={**state.hparams, "beta": jnp.float32(config.model.beta)})

    def networks(self, state: TrainState) -> dict:
        return {"VAE": state}

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        return functools.partial(
            vae_step,
            reconstruction=losses.RECONSTRUCTION_LOSSES[config.train.reconstruction],
            latent_dim=config.model.latent_dim,
            axis_name=axis_name,
        )

    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        """Prior latents, and the first test images for reconstructions."""
        n, data = config.eval.num_samples, config.data
        source = pipeline.load_data_split(data, data.eval_split)
        images = source.get(np.arange(min(n // 2, len(source))))["image"]
        images = pipeline.fit_images(images, data.image_size, data.channels)
        x = pipeline.scale_images(images, self.value_range)
        if data.binarize:
            x = pipeline.binarize(x, self.value_range)
        return {"z": sampling.latents(key, n, config.model.latent_dim), "x": x}

    def sample_grids(self, state: TrainState, z: jax.Array, x: jax.Array) -> dict:
        grids = {"prior_samples": sampling.vae_prior_samples(state, z)}
        if x.shape[0]:
            grids["reconstructions"] = sampling.vae_reconstructions(state, x)
        return grids

    def samples(self, state: TrainState, z: jax.Array) -> jax.Array:
        return sampling.vae_prior_samples(state, z)

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        return SCORES | (DISENTANGLEMENT_SCORES if best.has_disentanglement(data) else {})

    def make_scorer(self, config: ml_collections.ConfigDict):
        ev = config.eval
        return scoring.vae_scorer(config, ev.examples, ev.iwae_k, config.seed, self.value_range)
