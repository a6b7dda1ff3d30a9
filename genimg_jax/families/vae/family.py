"""VAE families: one encoder-decoder module and TrainState (FactorVAE adds a discriminator on
its codes), trained by `steps.vae` on images in [0, 1] with `model.objective`'s coefficients
traced in the state, and scored on test-set likelihood bounds (and, on data with known
factors, disentanglement; `evaluate.scoring.vae_scorer`)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genimg_jax import config as config_lib
from genimg_jax.core import losses
from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family, Rules
from genimg_jax.core.state import FactorVAEState, TrainState
from genimg_jax.data import pipeline
from genimg_jax.families import sampling, scoring
from genimg_jax.families.vae import ground_truth
from genimg_jax.families.vae.latent_discriminator import LatentDiscriminator
from genimg_jax.families.vae.step import OBJECTIVES, vae_step
from genimg_jax.metrics import disentanglement

SCORES = {
    "neg_elbo": "min",
    "iwae": "min",
    "neg_elbo_bits_per_dim": "min",
    "iwae_bits_per_dim": "min",
}
# on data with known factors; all but MIG and DCI need eval.disentanglement_scale > 0
DISENTANGLEMENT_SCORES = {name: "max" for name in disentanglement.STUDY_SCORES}


class VAEFamily(Family):
    """A VAE whose module `build(config)` returns: `__call__(x, eps) -> (logits, mean,
    logvar)`, `encode(x) -> (mean, logvar)` and `decode(z) -> logits`."""

    value_range = (0.0, 1.0)
    # the objectives' coefficients (steps.vae), traced in `hparams` under their last name
    COEFFICIENTS = ("beta", "gamma", "c_max", "c_steps", "lambda_od", "lambda_d", "kl_warmup_steps")
    hyperparameters = (*(f"model.{name}" for name in COEFFICIENTS), "train.lr", "train.disc_lr")

    def __init__(self, build: Callable[[ml_collections.ConfigDict], object]):
        self._build = build

    def build(self, config):
        return self._build(config)

    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        c.model.width = 32
        c.model.hidden = 256
        c.model.objective = "beta_vae"  # or a relative: steps.vae's table
        c.model.beta = 1.0  # β-VAE's KL weight; β-TCVAE's TC weight
        c.model.gamma = 10.0  # AnnealedVAE's |KL − C| weight; FactorVAE's TC weight
        c.model.c_max = 25.0  # AnnealedVAE: the capacity C (nats) reached after c_steps
        c.model.c_steps = 100_000
        c.model.lambda_od = 1.0  # DIP-VAE: off-diagonal and diagonal covariance weights
        c.model.lambda_d = 10.0
        c.model.kl_warmup_steps = 0  # > 0: the regulariser's weight rises linearly from 0
        c.model.disc_hidden = 1000  # FactorVAE's discriminator: layers x hidden units
        c.model.disc_layers = 6
        c.train.reconstruction = "bernoulli"
        c.train.lr = 1e-3
        c.train.disc_lr = 1e-4  # FactorVAE's discriminator: Adam(disc_lr, b1=0.5, b2=0.9)
        c.eval.iwae_k = 100  # importance samples of the IWAE bound
        # on data with known factors: 0 scores MIG and DCI (forests) on up to 5000 codes; > 0
        # every score of Locatello et al.'s study at this fraction of its sample counts
        c.eval.disentanglement_scale = 0.0
        c.eval.best_metric = "neg_elbo"  # keep the best checkpoint by this score; "" = don't

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        return {
            "model.width": config_lib.positive(),
            "model.hidden": config_lib.positive(),
            "model.objective": config_lib.one_of(OBJECTIVES),
            **{f"model.{name}": config_lib.at_least(0) for name in self.COEFFICIENTS},
            "model.disc_hidden": config_lib.positive(),
            "model.disc_layers": config_lib.positive(),
            "train.disc_lr": config_lib.positive(),
            "train.reconstruction": config_lib.one_of(losses.RECONSTRUCTION_LOSSES),
            "train.lr": config_lib.positive(),
            "eval.iwae_k": config_lib.positive(),
            "eval.disentanglement_scale": config_lib.at_least(0),
        }

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array):
        """The VAE's TrainState, or for FactorVAE a `FactorVAEState` with its discriminator."""
        vae, tx = state_lib.static_parts(config)
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        z = jnp.zeros((1, config.model.latent_dim))
        coefficients = {name: config.model[name] for name in self.COEFFICIENTS}
        if config.model.objective != "factor_vae":
            return state_lib.create_train_state(vae, tx, config.train.lr, rng, x, z, **coefficients)
        vae_rng, disc_rng = jax.random.split(rng)
        disc, disc_tx = _discriminator(config.model.disc_hidden, config.model.disc_layers)
        return FactorVAEState(
            vae=state_lib.create_train_state(
                vae, tx, config.train.lr, vae_rng, x, z, **coefficients
            ),
            disc=state_lib.create_train_state(disc, disc_tx, config.train.disc_lr, disc_rng, z),
        )

    def apply_hparams(self, state, config: ml_collections.ConfigDict):
        vae = state.vae if isinstance(state, FactorVAEState) else state
        vae = state_lib.with_learning_rate(vae, config.train.lr)
        coefficients = {name: jnp.float32(config.model[name]) for name in self.COEFFICIENTS}
        vae = vae.replace(hparams={**vae.hparams, **coefficients})
        if not isinstance(state, FactorVAEState):
            return vae
        return state.replace(
            vae=vae, disc=state_lib.with_learning_rate(state.disc, config.train.disc_lr)
        )

    def networks(self, state) -> dict:
        if isinstance(state, FactorVAEState):
            return {"VAE": state.vae, "discriminator": state.disc}
        return {"VAE": state}

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        return functools.partial(
            vae_step,
            reconstruction=losses.RECONSTRUCTION_LOSSES[config.train.reconstruction],
            latent_dim=config.model.latent_dim,
            objective=config.model.objective,
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

    def samples(self, state: TrainState, z: jax.Array, labels: None) -> jax.Array:
        del labels  # the VAEs are unconditional
        return sampling.vae_prior_samples(state, z)

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        known = ground_truth.has_known_factors(data)
        return SCORES | (DISENTANGLEMENT_SCORES if known else {})

    def make_scorer(self, config: ml_collections.ConfigDict):
        ev = config.eval
        return scoring.vae_scorer(config, ev.examples, ev.iwae_k, config.seed, self.value_range)


@functools.lru_cache(maxsize=8)
def _discriminator(
    hidden: int, layers: int
) -> tuple[LatentDiscriminator, optax.GradientTransformation]:
    """FactorVAE's discriminator and its optimizer, Adam with b1 = 0.5, b2 = 0.9 as Kim & Mnih
    (learning rate traced: `train.disc_lr`). Cached: members of a sweep share them, hence the
    treedef of their states, hence one compiled step."""
    return LatentDiscriminator(hidden, layers), optax.inject_hyperparams(optax.adam)(
        learning_rate=0.0, b1=0.5, b2=0.9
    )
