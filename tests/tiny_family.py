"""A model family defined outside the package, as a user would write one (README, "Adding a model
family"): a deterministic autoencoder with a tanh decoder trained on mean squared error, and its
own config field, validation rule, `:quick` shrinking, step (correct under pmap: its gradient
is averaged over the device axis), grids, samples and score. Importing this module
registers it as `tiny_ae`; configs name the module in `model.family_module`."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import genimg_jax
from genimg_jax import config as config_lib
from genimg_jax.core import collectives, fields
from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family
from genimg_jax.data import pipeline


class TinyAutoencoder(nn.Module):
    latent_dim: int
    hidden: int
    shape: tuple[int, int, int]

    def setup(self):
        self.encoder = nn.Sequential([nn.Dense(self.hidden), nn.relu, nn.Dense(self.latent_dim)])
        self.decoder = nn.Sequential(
            [nn.Dense(self.hidden), nn.relu, nn.Dense(np.prod(self.shape))]
        )

    def __call__(self, x):
        return self.decode(self.encoder(x.reshape(x.shape[0], -1)))

    def decode(self, z):
        return jnp.tanh(self.decoder(z)).reshape(z.shape[0], *self.shape)


class TinyAE(Family):
    value_range = (-1.0, 1.0)
    hyperparameters = ("train.lr",)

    def add_defaults(self, c):
        c.model.hidden = 32
        c.train.lr = 1e-3
        c.eval.best_metric = "mse"

    def rules(self, config):
        return {"model.hidden": fields.positive(), "train.lr": fields.positive()}

    def shrink_for_tests(self, c):
        c.model.hidden = 16

    def build(self, config):
        return TinyAutoencoder(
            config.model.latent_dim, config.model.hidden, state_lib.image_shape(config)
        )

    def create_state(self, config, rng):
        module, tx = self.static_parts(config)
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        return state_lib.create_train_state(module, tx, config.train.lr, rng, x)

    def apply_hparams(self, state, config):
        return state_lib.with_learning_rate(state, config.train.lr)

    def networks(self, state):
        return {"autoencoder": state}

    def make_train_step(self, config, axis_name):
        def step(state, batch, rng):
            def loss_fn(params):
                x = batch["image"]
                return jnp.mean((state.apply_fn({"params": params}, x) - x) ** 2)

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            grads = collectives.mean(grads, axis_name)  # pmap: the global batch's gradient
            loss = collectives.mean(loss, axis_name)
            metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
            return state.apply_gradients(grads=grads), metrics

        return step

    def grid_inputs(self, config, key):
        return {"z": jax.random.normal(key, (config.eval.num_samples, config.model.latent_dim))}

    def sample_grids(self, state, z):
        return {"decoded": self.samples(state, z, None)}

    def samples(self, state, z, labels):
        del labels
        return state.apply_fn({"params": state.params}, z, method="decode")

    def score_modes(self, data):
        return {"mse": "min"}

    def make_scorer(self, config):
        data = config.data
        source = pipeline.load_data_split(data, data.eval_split)
        images = source.get(np.arange(min(config.eval.examples, len(source))))["image"]
        images = pipeline.fit_images(images, data.image_size, data.channels)
        x = pipeline.model_images(images, self.value_range, data.binarize)

        def score(state):
            return {"mse": float(jnp.mean((state.apply_fn({"params": state.params}, x) - x) ** 2))}

        return score


genimg_jax.register_family("tiny_ae", TinyAE())


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """A quick config of the tiny family on the bundled digits (also a config file)."""
    c = config_lib.base_config("tiny_ae", family_module="tiny_family")
    c.data.image_size = 28
    return config_lib.shrink_for_tests(c)
