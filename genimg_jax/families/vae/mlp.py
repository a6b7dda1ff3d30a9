"""MLP VAE: dense encoder and decoder on flattened pixels (the classic Kingma & Welling model),
sharing the VAE wrapper and step with the conv VAE."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.families.vae.conv import VAE
from genimg_jax.models.common import build_options

Array = jax.Array


class MLPEncoder(nn.Module):
    """x: [B, S, S, C] -> (mean, logvar): [B, Z] each."""

    latent_dim: int
    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = x.reshape(x.shape[0], -1)
        for _ in range(2):
            h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(h))
        mean_logvar = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)
        return jnp.split(mean_logvar, 2, axis=-1)


class MLPDecoder(nn.Module):
    """z: [B, Z] -> pixel logits [B, S, S, C]."""

    image_size: int
    channels: int
    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = z
        for _ in range(2):
            h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(h))
        pixels = self.image_size * self.image_size * self.channels
        logits = nn.Dense(pixels, dtype=self.dtype)(h).astype(jnp.float32)
        return logits.reshape(z.shape[0], self.image_size, self.image_size, self.channels)


def build(config: ml_collections.ConfigDict) -> VAE:
    """The MLP VAE sized from `config.data` and `config.model` (`hidden`, `latent_dim`)."""
    m, d, dtype = config.model, config.data, build_options(config)["dtype"]
    return VAE(
        MLPEncoder(m.latent_dim, m.hidden, dtype),
        MLPDecoder(d.image_size, d.channels, m.hidden, dtype),
    )
