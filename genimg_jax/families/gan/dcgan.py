"""DCGAN (Radford et al. 2016): G projects z and upsamples with transposed convs + BatchNorm +
ReLU to a tanh image; D downsamples with strided convs + LeakyReLU to one logit.

Conditional (`model.num_classes` = K > 0): G concatenates a learned class embedding to z; D adds
a projection term (Miyato & Koyama 2018), logit += <embed(y), features>.

InfoGAN's codes (no labels): G takes a categorical code c (`model.latent_codes` = K > 0) as it
would a class, and continuous codes are z's first C dims (`model.latent_continuous` = C > 0);
D's head Q predicts them from its features (K logits, then C means: [B, K + C], sown as
`intermediates/code_logits`; `step._discriminate_with_codes`).

D's minibatch standard deviation (`model.mbstd_group` = G > 0; ProGAN, Karras et al. 2018): its
last feature map gets one more channel, the mean standard deviation of the features over each
group of G consecutive images, so D can tell a batch of too-similar fakes from real images (as
StyleGAN2's D, `models.common.minibatch_stddev`); every head reads it."""

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
    code_head_size,
    conv_gradients,
    labels_or_default,
    mbstd_group_size,
    minibatch_stddev,
    spatial_plan,
    widths,
)

Array = jax.Array


class Generator(nn.Module):
    """z: [B, Z] (and labels: int32 [B] when conditional) -> image in [-1, 1]: [B, S, S, C]
    float32. Conditional G without labels draws `fixed_labels` (classes in order)."""

    image_size: int
    channels: int
    width: int
    dtype: Any = jnp.float32
    axis_name: str | None = None
    num_classes: int = 0  # 0: unconditional
    gradients: str = "auto"  # the convolutions' (`layers.custom_gradients_here`)

    @nn.compact
    def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
        start, doublings = spatial_plan(self.image_size)
        stack = widths(self.width, doublings)[::-1]  # coarse to fine
        labels = labels_or_default(labels, z.shape[0], self.num_classes)
        if labels is not None:  # [B, Z] ++ [B, Z] class embedding
            z = jnp.concatenate([z, nn.Embed(self.num_classes, z.shape[-1])(labels)], axis=-1)
        h = nn.Dense(start * start * stack[0], use_bias=False, dtype=self.dtype)(z)
        h = h.reshape(z.shape[0], start, start, stack[0])
        h = nn.relu(batch_norm(train, self.dtype, self.axis_name)(h))
        up = UpStack(stack[1:], self.channels, True, self.dtype, self.axis_name, self.gradients)
        return jnp.tanh(up(h, train))


class Discriminator(nn.Module):
    """image: [B, S, S, C] (and labels: int32 [B] when conditional) -> logits [B] float32.
    `train` and `update_stats` are accepted for the shared D interface (no BatchNorm or
    spectral norm here, so they change nothing)."""

    image_size: int
    width: int
    dtype: Any = jnp.float32
    num_classes: int = 0  # 0: unconditional
    gradients: str = "auto"  # the convolutions' (`layers.custom_gradients_here`)
    codes: int = 0  # K + C > 0: InfoGAN's head Q's outputs (module docstring)
    mbstd_group: int = 0  # G > 0: the minibatch standard deviation (module docstring)
    axis_name: str | None = None  # the devices' axis under pmap (the group size's check)

    @nn.compact
    def __call__(
        self,
        x: Array,
        labels: Array | None = None,
        train: bool = False,
        update_stats: bool = False,
    ) -> Array:
        del train, update_stats
        _, doublings = spatial_plan(self.image_size)
        leaky = lambda a: nn.leaky_relu(a, 0.2)
        h = DownStack(widths(self.width, doublings), leaky, self.dtype, self.gradients)(x)
        if self.mbstd_group:
            axis_name = None if self.is_initializing() else self.axis_name  # init: unmapped
            h = minibatch_stddev(h, mbstd_group_size(self.mbstd_group, x.shape[0], axis_name))
        h = h.reshape(x.shape[0], -1)  # [B, F]
        logits = nn.Dense(1, dtype=self.dtype)(h)[:, 0]
        if self.codes:
            code_logits = nn.Dense(self.codes, dtype=self.dtype, name="code_head")(h)
            self.sow("intermediates", "code_logits", code_logits.astype(jnp.float32))
        labels = labels_or_default(labels, x.shape[0], self.num_classes)
        if labels is not None:  # projection: + <embed(y), h>
            embed = nn.Embed(self.num_classes, h.shape[-1], dtype=self.dtype)(labels)
            logits = logits + jnp.sum(embed * h, axis=-1)
        return logits.astype(jnp.float32)


def build(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
    """G and D sized from `config.data` (image size, channels) and `config.model` (widths,
    classes)."""
    options, grads = build_options(config), conv_gradients(config)
    k, codes = config.model.get("num_classes", 0), config.model.get("latent_codes", 0)
    data = config.data
    g = Generator(
        data.image_size,
        data.channels,
        config.model.g_width,
        **options,
        num_classes=k or codes,
        gradients=grads,
    )
    d = Discriminator(
        data.image_size,
        config.model.d_width,
        options["dtype"],
        k,
        grads,
        code_head_size(config.model),
        config.model.get("mbstd_group", 0),
        options["axis_name"],
    )
    return g, d
