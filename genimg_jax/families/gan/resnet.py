"""ResNet GAN of SN-GAN (Miyato et al. 2018, the CIFAR-10 ResNet of its Table 4).

G: z -> Dense(s·s·w) -> up-ResBlocks (BN, ReLU, nearest 2x upsample, 3x3 conv, BN, ReLU, 3x3 conv;
shortcut 1x1 conv of the upsampled input) -> BN, ReLU, 3x3 conv, tanh. D: an optimized first
down-block, down-blocks (2x2 average pooling), two plain blocks, ReLU, global sum pooling,
Dense(1), with spectral normalisation on every conv and dense layer (and on the class
embedding). Upsampling followed by a conv, and a conv followed by pooling, each run as one
cheaper convolution with the same weights (`resampling`). Sizes follow `common.spatial_plan`:
for 32x32, G goes 4 -> 8 -> 16 -> 32 and D 32 -> 16 -> 8.

Spectral norm's power-iteration vectors (`u`, and the last `sigma`) live in D's `batch_stats`
collection: D called with `update_stats=True` and `mutable=["batch_stats"]` advances them one
iteration (the D step); with `update_stats=False` they are read only (the G step, sampling).

Conditional (`model.num_classes` = K > 0): G's BatchNorms inside the blocks take a per-class
scale and shift (conditional BatchNorm, de Vries et al. 2017); D adds the projection term
(Miyato & Koyama 2018), logit += <embed(y), features>.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.models.common import (
    batch_norm,
    build_options,
    code_head_size,
    labels_or_default,
    spatial_plan,
)
from genimg_jax.models.resampling import (
    CONV_DOWNSAMPLE,
    SAME_CONV,
    UPSAMPLE_CONV,
    downsample,
    upsample,
)

Array = jax.Array
PLAIN_D_BLOCKS = 2  # blocks at D's coarsest size, after the down-blocks (SN-GAN's CIFAR D)
RESIDUAL_INIT = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")  # Glorot, gain √2
SHORTCUT_INIT = nn.initializers.xavier_uniform()


def same_conv(features: int, k: int, init, dtype: Any, op=None) -> nn.Conv:
    """A k x k stride-1 "SAME" `nn.Conv` that convolves `layers.materialize(x)` (through the
    `SAME_CONV` hook); `op`, another `resampling` hook, makes it compute conv(upsample(x)) or
    downsample(conv(x)) with the same variables."""
    hook = op or SAME_CONV
    return nn.Conv(
        features, (k, k), padding="SAME", kernel_init=init, dtype=dtype, conv_general_dilated=hook
    )


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (labels int32 [B]); a plain
    BatchNorm when `labels` is None."""

    num_classes: int = 0
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, labels: Array | None, train: bool) -> Array:
        if labels is None:
            return batch_norm(train, self.dtype, self.axis_name)(x)
        h = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            use_scale=False,
            use_bias=False,
            dtype=self.dtype,
            axis_name=self.axis_name,
        )(x)
        features = x.shape[-1]
        scale = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.ones)
        shift = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros)
        return h * scale(labels)[:, None, None, :] + shift(labels)[:, None, None, :]


class GBlock(nn.Module):
    """Up-ResBlock: [B, H, W, C] -> [B, 2H, 2W, features]."""

    features: int
    num_classes: int = 0
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, labels: Array | None, train: bool) -> Array:
        norm = lambda: ConditionalBatchNorm(self.num_classes, self.dtype, self.axis_name)
        conv = lambda k, init, op=None: same_conv(self.features, k, init, self.dtype, op)
        h = nn.relu(norm()(x, labels, train))
        h = conv(3, RESIDUAL_INIT, UPSAMPLE_CONV)(h)  # conv(upsample(h)), at 4/9 of the cost
        h = nn.relu(norm()(h, labels, train))
        h = conv(3, RESIDUAL_INIT)(h)
        # 1x1 conv then nearest upsampling equals upsampling then the conv, at 1/4 of the cost
        shortcut = upsample(conv(1, SHORTCUT_INIT)(x))
        return h + shortcut


class Generator(nn.Module):
    """z: [B, Z] (and labels: int32 [B] when conditional) -> image in [-1, 1]: [B, S, S, C]
    float32. A conditional G without labels draws `fixed_labels` (classes in order)."""

    image_size: int
    channels: int
    width: int
    dtype: Any = jnp.float32
    axis_name: str | None = None
    num_classes: int = 0

    @nn.compact
    def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
        start, doublings = spatial_plan(self.image_size)
        labels = labels_or_default(labels, z.shape[0], self.num_classes)
        h = nn.Dense(start * start * self.width, kernel_init=SHORTCUT_INIT, dtype=self.dtype)(z)
        h = h.reshape(z.shape[0], start, start, self.width)
        for _ in range(doublings):
            h = GBlock(self.width, self.num_classes, self.dtype, self.axis_name)(h, labels, train)
        h = nn.relu(batch_norm(train, self.dtype, self.axis_name)(h))
        out = same_conv(self.channels, 3, SHORTCUT_INIT, self.dtype)
        return jnp.tanh(out(h).astype(jnp.float32))


class DBlock(nn.Module):
    """D's ResBlock, every conv spectrally normalised: [B, H, W, C] -> [B, H', W', features],
    H' = H/2 when `down`. `optimized`: the first block, on images (no ReLU before the first
    conv). A down-block's shortcut pools, then runs its 1x1 conv (equal to SN-GAN's conv, then
    pool; 1/4 of the cost)."""

    features: int
    down: bool
    optimized: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, update_stats: bool) -> Array:
        def conv(k: int, init, h: Array, op=None) -> Array:
            layer = same_conv(self.features, k, init, self.dtype, op)
            return nn.SpectralNorm(layer)(h, update_stats=update_stats)

        h = x if self.optimized else nn.relu(x)
        h = conv(3, RESIDUAL_INIT, h)
        # downsample(conv(h)) as one stride-2 conv, at 4/9 of the cost
        h = conv(3, RESIDUAL_INIT, nn.relu(h), CONV_DOWNSAMPLE if self.down else None)
        if self.down or x.shape[-1] != self.features:
            # a 1x1 conv commutes with average pooling: pooling first costs 1/4
            shortcut = conv(1, SHORTCUT_INIT, downsample(x) if self.down else x)
        else:
            shortcut = x
        return h + shortcut


class Discriminator(nn.Module):
    """image: [B, S, S, C] (and labels: int32 [B] when conditional) -> logits [B] float32.
    `update_stats=True` (with mutable batch_stats) advances spectral norm's power iteration;
    `train` is accepted for the shared D interface (no BatchNorm here)."""

    image_size: int
    width: int
    dtype: Any = jnp.float32
    num_classes: int = 0
    codes: int = 0  # K + C > 0: InfoGAN's head Q's outputs, as the DCGAN's D (dcgan.py)

    @nn.compact
    def __call__(
        self,
        x: Array,
        labels: Array | None = None,
        train: bool = False,
        update_stats: bool = False,
    ) -> Array:
        del train
        _, doublings = spatial_plan(self.image_size)
        h = DBlock(self.width, down=True, optimized=True, dtype=self.dtype)(x, update_stats)
        for _ in range(doublings - 2):  # down to 2 x G's starting size
            h = DBlock(self.width, down=True, dtype=self.dtype)(h, update_stats)
        for _ in range(PLAIN_D_BLOCKS):
            h = DBlock(self.width, down=False, dtype=self.dtype)(h, update_stats)
        h = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling: [B, C]
        dense = nn.Dense(1, kernel_init=SHORTCUT_INIT, dtype=self.dtype)
        logits = nn.SpectralNorm(dense)(h, update_stats=update_stats)[:, 0]
        if self.codes:
            code_logits = nn.Dense(self.codes, dtype=self.dtype, name="code_head")(h)
            self.sow("intermediates", "code_logits", code_logits.astype(jnp.float32))
        labels = labels_or_default(labels, x.shape[0], self.num_classes)
        if labels is not None:  # projection: + <embed(y), h>
            embed = nn.Embed(
                self.num_classes, h.shape[-1], embedding_init=SHORTCUT_INIT, dtype=self.dtype
            )
            logits = logits + jnp.sum(
                nn.SpectralNorm(embed)(labels, update_stats=update_stats) * h, axis=-1
            )
        return logits.astype(jnp.float32)


def build(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
    """G and D sized from `config.data` (image size, channels) and `config.model` (`g_width`:
    G's channels, 256 in SN-GAN; `d_width`: D's, 128; `num_classes`)."""
    options = build_options(config)
    k, codes = config.model.get("num_classes", 0), config.model.get("latent_codes", 0)
    g = Generator(
        config.data.image_size,
        config.data.channels,
        config.model.g_width,
        **options,
        num_classes=k or codes,
    )
    d = Discriminator(
        config.data.image_size,
        config.model.d_width,
        options["dtype"],
        k,
        code_head_size(config.model),
    )
    return g, d
