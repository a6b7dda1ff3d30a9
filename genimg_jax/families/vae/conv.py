"""Convolutional VAE: a strided-conv encoder to the mean and log-variance of q(z|x), and a
mirrored transposed-conv decoder to per-pixel logits of p(x|z)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.models.common import (
    DownStack,
    UpStack,
    build_options,
    conv_gradients,
    spatial_plan,
    widths,
)

Array = jax.Array


class Encoder(nn.Module):
    """x: [B, S, S, C] -> (mean, logvar): [B, Z] each."""

    image_size: int
    width: int
    latent_dim: int
    hidden: int
    dtype: Any = jnp.float32
    gradients: str = "auto"  # the convolutions' (`layers.custom_gradients_here`)

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        _, doublings = spatial_plan(self.image_size)
        h = DownStack(widths(self.width, doublings), nn.relu, self.dtype, self.gradients)(x)
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(h.reshape(x.shape[0], -1)))
        mean_logvar = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)
        return jnp.split(mean_logvar, 2, axis=-1)


class Decoder(nn.Module):
    """z: [B, Z] -> pixel logits [B, S, S, C]."""

    image_size: int
    channels: int
    width: int
    hidden: int
    dtype: Any = jnp.float32
    gradients: str = "auto"  # the convolutions' (`layers.custom_gradients_here`)

    @nn.compact
    def __call__(self, z: Array) -> Array:
        start, doublings = spatial_plan(self.image_size)
        stack = widths(self.width, doublings)[::-1]  # coarse to fine
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(z))
        h = nn.relu(nn.Dense(start * start * stack[0], dtype=self.dtype)(h))
        h = h.reshape(z.shape[0], start, start, stack[0])
        return UpStack(stack[1:], self.channels, dtype=self.dtype, gradients=self.gradients)(h)


class VAE(nn.Module):
    """q(z|x) = N(mean, exp(logvar)), p(z) = N(0, I), p(x|z) from decoder logits. Any encoder
    (x -> (mean, logvar)) and decoder (z -> pixel logits) pair: the conv and MLP VAEs share it."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: Array, eps: Array) -> tuple[Array, Array, Array]:
        """(logits [B,S,S,C], mean [B,Z], logvar [B,Z]) with z = mean + exp(logvar / 2)·eps,
        eps ~ N(0, I): [B, Z] drawn by the caller (reparameterisation)."""
        mean, logvar = self.encoder(x)
        z = mean + jnp.exp(0.5 * logvar) * eps
        return self.decoder(z), mean, logvar

    def encode(self, x: Array) -> tuple[Array, Array]:
        """x -> (mean, logvar) of q(z|x)."""
        return self.encoder(x)

    def decode(self, z: Array) -> Array:
        """z -> pixel logits."""
        return self.decoder(z)


def build(config: ml_collections.ConfigDict) -> VAE:
    """The VAE sized from `config.data` (image size, channels) and `config.model`."""
    m, d, dtype = config.model, config.data, build_options(config)["dtype"]  # no BN: no axis
    grads = conv_gradients(config)
    return VAE(
        Encoder(d.image_size, m.width, m.latent_dim, m.hidden, dtype, grads),
        Decoder(d.image_size, d.channels, m.width, m.hidden, dtype, grads),
    )
