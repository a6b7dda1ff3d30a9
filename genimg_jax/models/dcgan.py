"""DCGAN (Radford et al. 2016): G projects z and upsamples with transposed convs + BatchNorm +
ReLU to a tanh image; D downsamples with strided convs + LeakyReLU to one logit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.models.common import DownStack, UpStack, spatial_plan, widths

Array = jax.Array


class Generator(nn.Module):
    """z: [B, Z] -> image in [-1, 1]: [B, S, S, C]."""

    image_size: int
    channels: int
    width: int

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        start, doublings = spatial_plan(self.image_size)
        stack = widths(self.width, doublings)[::-1]  # coarse to fine
        h = nn.Dense(start * start * stack[0], use_bias=False)(z)
        h = h.reshape(z.shape[0], start, start, stack[0])
        h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
        h = UpStack(stack[1:], self.channels, batch_norm=True)(h, train)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """image: [B, S, S, C] -> logits [B]."""

    image_size: int
    width: int

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _, doublings = spatial_plan(self.image_size)
        h = DownStack(widths(self.width, doublings), activation=lambda a: nn.leaky_relu(a, 0.2))(x)
        return nn.Dense(1)(h.reshape(x.shape[0], -1))[:, 0]


def build(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
    """G and D sized from `config.data` (image size, channels) and `config.model` (widths)."""
    g = Generator(config.data.image_size, config.data.channels, config.model.g_width)
    d = Discriminator(config.data.image_size, config.model.d_width)
    return g, d
