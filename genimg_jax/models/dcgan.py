"""DCGAN (Radford et al. 2016): G projects z and upsamples with transposed convs + BatchNorm +
ReLU to a tanh image; D downsamples with strided convs + LeakyReLU to one logit."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.models.common import (
    DownStack,
    UpStack,
    batch_norm,
    build_options,
    spatial_plan,
    widths,
)

Array = jax.Array


class Generator(nn.Module):
    """z: [B, Z] -> image in [-1, 1]: [B, S, S, C] float32."""

    image_size: int
    channels: int
    width: int
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        start, doublings = spatial_plan(self.image_size)
        stack = widths(self.width, doublings)[::-1]  # coarse to fine
        h = nn.Dense(start * start * stack[0], use_bias=False, dtype=self.dtype)(z)
        h = h.reshape(z.shape[0], start, start, stack[0])
        h = nn.relu(batch_norm(train, self.dtype, self.axis_name)(h))
        up = UpStack(stack[1:], self.channels, True, self.dtype, self.axis_name)
        return jnp.tanh(up(h, train))


class Discriminator(nn.Module):
    """image: [B, S, S, C] -> logits [B] float32."""

    image_size: int
    width: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _, doublings = spatial_plan(self.image_size)
        leaky = lambda a: nn.leaky_relu(a, 0.2)
        h = DownStack(widths(self.width, doublings), leaky, self.dtype)(x)
        logits = nn.Dense(1, dtype=self.dtype)(h.reshape(x.shape[0], -1))[:, 0]
        return logits.astype(jnp.float32)


def build(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
    """G and D sized from `config.data` (image size, channels) and `config.model` (widths)."""
    options = build_options(config)
    g = Generator(config.data.image_size, config.data.channels, config.model.g_width, **options)
    d = Discriminator(config.data.image_size, config.model.d_width, options["dtype"])
    return g, d
