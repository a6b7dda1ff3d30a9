"""The VAE family: one encoder-decoder module and TrainState, trained by `step.vae_step` on
images in [0, 1] with `model.objective`'s coefficients traced in the state, and scored on
test-set likelihood bounds (and, on data with known factors, disentanglement;
`scoring.vae_scorer`). `model.objective="factor_vae"` selects its variant `FactorVAEFamily`,
which adds a discriminator on the codes (`factor_vae`)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax.core import fields, losses
from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family, SweepAxes
from genimg_jax.core.fields import Rules
from genimg_jax.core.state import TrainState
from genimg_jax.data import pipeline
from genimg_jax.families import draw
from genimg_jax.families.vae import factor_vae, ground_truth, scoring
from genimg_jax.families.vae.factor_vae import FactorVAEState
from genimg_jax.families.vae.step import OBJECTIVES, VAEStep, vae_step
from genimg_jax.metrics import disentanglement

SCORES = {
    "neg_elbo": "min",
    "iwae": "min",
    "neg_elbo_bits_per_dim": "min",
    "iwae_bits_per_dim": "min",
}
# on data with known factors; all but MIG and DCI need eval.disentanglement_scale > 0
DISENTANGLEMENT_SCORES = {name: "max" for name in disentanglement.STUDY_SCORES}


def prior_samples(state: TrainState, z: jax.Array) -> jax.Array:
    """Mean of p(x|z) for z ~ p(z): [N, H, W, C] in [0, 1]."""
    return jax.nn.sigmoid(state.apply_fn({"params": state.params}, z, method="decode"))


def reconstructions(state: TrainState, x: jax.Array) -> jax.Array:
    """Each input next to the mean of p(x | z = E[z|x]): [2N, H, W, C] in [0, 1], pairs adjacent."""
    mean, _ = state.apply_fn({"params": state.params}, x, method="encode")
    x_hat = jax.nn.sigmoid(state.apply_fn({"params": state.params}, mean, method="decode"))
    return jnp.stack([x, x_hat], axis=1).reshape(-1, *x.shape[1:])


class VAEFamily(Family):
    """A VAE whose module `build(config)` returns: `__call__(x, eps) -> (logits, mean,
    logvar)`, `encode(x) -> (mean, logvar)` and `decode(z) -> logits`."""

    value_range = (0.0, 1.0)
    # the objectives' coefficients (`step`), traced in `hparams` under their last name
    COEFFICIENTS = ("beta", "gamma", "c_max", "c_steps", "lambda_od", "lambda_d", "kl_warmup_steps")
    hyperparameters = (*(f"model.{name}" for name in COEFFICIENTS), "train.lr", "train.disc_lr")
    sweep_axes = SweepAxes(
        rate="model.beta", method="model.objective", learning_rates=("train.lr",)
    )

    def __init__(self, build: Callable[[ml_collections.ConfigDict], object]):
        self._build = build

    @functools.cached_property
    def factor_vae(self) -> "FactorVAEFamily":
        """This family's FactorVAE variant (the same networks and a discriminator)."""
        return FactorVAEFamily(self._build)

    def resolve(self, config: ml_collections.ConfigDict) -> Family:
        return self.factor_vae if config.model.objective == "factor_vae" else self

    def build(self, config):
        return self._build(config)

    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        c.model.width = 32
        c.model.hidden = 256
        c.model.objective = "beta_vae"  # or a relative: step.py's table
        c.model.beta = 1.0  # β-VAE's KL weight; β-TCVAE's TC weight
        c.model.gamma = 10.0  # AnnealedVAE's |KL − C| weight; FactorVAE's TC weight
        c.model.c_max = 25.0  # AnnealedVAE: the capacity C (nats) reached after c_steps
        c.model.c_steps = 100_000
        c.model.lambda_od = 1.0  # DIP-VAE: off-diagonal and diagonal covariance weights
        c.model.lambda_d = 10.0
        c.model.kl_warmup_steps = 0  # > 0: the regulariser's weight rises linearly from 0
        c.model.disc_hidden = 1000  # FactorVAE's discriminator: layers x hidden units
        c.model.disc_layers = 6
        c.train.reconstruction = "bernoulli"  # or "mse": L = Σ(x − sigmoid(logits))² + β·KL
        # "mse": σ of the Gaussian p(x|z) = N(sigmoid(logits), σ²I) the model is scored with
        # (on the data's pixel levels, `scoring.pixel_likelihood`); √½ is the one the loss
        # implies: Σ(x − μ)² = −log N(x; μ, ½I) − D/2·log π
        c.train.mse_sigma = losses.MSE_SIGMA
        c.train.lr = 1e-3
        c.train.disc_lr = 1e-4  # FactorVAE's discriminator: Adam(disc_lr, b1=0.5, b2=0.9)
        c.eval.iwae_k = 100  # importance samples of the IWAE bound
        # on data with known factors: 0 scores MIG and DCI (forests) on up to 5000 codes; > 0
        # every score of Locatello et al.'s study at this fraction of its sample counts
        c.eval.disentanglement_scale = 0.0
        c.eval.best_metric = "neg_elbo"  # keep the best checkpoint by this score; "" = don't

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        return {
            "model.width": fields.positive(),
            "model.hidden": fields.positive(),
            "model.objective": fields.one_of(OBJECTIVES),
            **{f"model.{name}": fields.at_least(0) for name in self.COEFFICIENTS},
            "model.disc_hidden": fields.positive(),
            "model.disc_layers": fields.positive(),
            "train.disc_lr": fields.positive(),
            "train.reconstruction": fields.one_of(losses.RECONSTRUCTION_LOSSES),
            "train.mse_sigma": fields.positive(),
            "train.lr": fields.positive(),
            "eval.iwae_k": fields.positive(),
            "eval.disentanglement_scale": fields.at_least(0),
        }

    def shrink_for_tests(self, c: ml_collections.ConfigDict) -> None:
        c.model.width = 8
        c.model.hidden = c.model.disc_hidden = 16
        c.model.disc_layers = 2
        c.eval.iwae_k = 8

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
        vae, tx = self.static_parts(config)
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        z = jnp.zeros((1, config.model.latent_dim))
        coefficients = {name: config.model[name] for name in self.COEFFICIENTS}
        return state_lib.create_train_state(vae, tx, config.train.lr, rng, x, z, **coefficients)

    def apply_hparams(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
        state = state_lib.with_learning_rate(state, config.train.lr)
        coefficients = {name: jnp.float32(config.model[name]) for name in self.COEFFICIENTS}
        return state.replace(hparams={**state.hparams, **coefficients})

    def networks(self, state: TrainState) -> dict:
        return {"VAE": state}

    def step_spec(self, config: ml_collections.ConfigDict) -> VAEStep:
        """The static settings of the config's VAE step; its `recon` metric is −log p(x|z) of
        the scored likelihood, which for "mse" is not the loss's term."""
        pixels = scoring.pixel_likelihood(config)
        return VAEStep(
            reconstruction=losses.RECONSTRUCTION_LOSSES[config.train.reconstruction],
            latent_dim=config.model.latent_dim,
            objective=config.model.objective,
            likelihood=None if pixels.reconstruction == "bernoulli" else pixels.nll,
        )

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        return functools.partial(vae_step, spec=self.step_spec(config), axis_name=axis_name)

    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        """Prior latents, and the first test images for reconstructions."""
        n, data = config.eval.num_samples, config.data
        source = pipeline.load_data_split(data, data.eval_split)
        images = source.get(np.arange(min(n // 2, len(source))))["image"]
        images = pipeline.fit_images(images, data.image_size, data.channels)
        x = pipeline.model_images(images, self.value_range, data.binarize)
        return {"z": draw.latents(key, n, config.model.latent_dim), "x": x}

    def sample_grids(self, state: TrainState, z: jax.Array, x: jax.Array) -> dict:
        grids = {"prior_samples": prior_samples(state, z)}
        if x.shape[0]:
            grids["reconstructions"] = reconstructions(state, x)
        return grids

    def samples(self, state: TrainState, z: jax.Array, labels: None) -> jax.Array:
        del labels  # the VAEs are unconditional
        return prior_samples(state, z)

    def encode(self, state: TrainState, x: jax.Array) -> jax.Array:
        """The posterior means E[z|x]: [N, latent_dim]."""
        return state.apply_fn({"params": state.params}, x, method="encode")[0]

    def decode(self, state: TrainState, latents: jax.Array) -> jax.Array:
        """The means of p(x|z): [N, H, W, C] in [0, 1]."""
        return prior_samples(state, latents)

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        known = ground_truth.has_known_factors(data)
        return SCORES | (DISENTANGLEMENT_SCORES if known else {})

    def make_scorer(self, config: ml_collections.ConfigDict):
        return scoring.vae_scorer(config, self.value_range)


class FactorVAEFamily(VAEFamily):
    """FactorVAE: the VAE family's networks, objective "factor_vae", and a discriminator on the
    codes with its own state (`factor_vae.FactorVAEState`)."""

    def resolve(self, config: ml_collections.ConfigDict) -> Family:
        return self

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> FactorVAEState:
        vae_rng, disc_rng = jax.random.split(rng)
        disc, disc_tx = factor_vae.discriminator(config.model.disc_hidden, config.model.disc_layers)
        z = jnp.zeros((1, config.model.latent_dim))
        return FactorVAEState(
            vae=super().create_state(config, vae_rng),
            disc=state_lib.create_train_state(disc, disc_tx, config.train.disc_lr, disc_rng, z),
        )

    def apply_hparams(self, state: FactorVAEState, config: ml_collections.ConfigDict):
        return state.replace(
            vae=super().apply_hparams(state.vae, config),
            disc=state_lib.with_learning_rate(state.disc, config.train.disc_lr),
        )

    def networks(self, state: FactorVAEState) -> dict:
        return {"VAE": state.vae, "discriminator": state.disc}

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        step, spec = factor_vae.factor_vae_step, self.step_spec(config)
        return functools.partial(step, spec=spec, axis_name=axis_name)

    def sample_grids(self, state: FactorVAEState, z: jax.Array, x: jax.Array) -> dict:
        return super().sample_grids(state.vae, z, x)

    def samples(self, state: FactorVAEState, z: jax.Array, labels: None) -> jax.Array:
        return super().samples(state.vae, z, labels)

    def encode(self, state: FactorVAEState, x: jax.Array) -> jax.Array:
        return super().encode(state.vae, x)

    def decode(self, state: FactorVAEState, latents: jax.Array) -> jax.Array:
        return super().decode(state.vae, latents)

    def make_scorer(self, config: ml_collections.ConfigDict):
        score = super().make_scorer(config)
        return lambda state: score(state.vae)
