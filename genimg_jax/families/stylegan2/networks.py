"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), as in
the official StyleGAN2-ADA code's `networks.py`, config F with its skip G and residual D.

G = mapping, then synthesis. The mapping network normalises z (and a class embedding when
conditional), runs `mapping_layers` equalised-lr dense layers (lr multiplier 0.01, leaky ReLU)
to w [B, w_dim], and keeps the EMA of w (`batch_stats["w_avg"]`, β = 0.995) that truncation
pulls towards: w' = w_avg + ψ·(w − w_avg). The synthesis network starts from a learned
constant at the smallest size (`common.spatial_plan`: 4 for 32..256 px, 7 for 28 px) and at each
size runs modulated 3x3 convolutions (styles from an affine map of w, demodulated), each adding
per-pixel noise scaled by a learned strength, and a 1x1 to-RGB whose outputs are upsampled and
summed (the skip G). It reads one w per layer: ws [B, num_ws, w_dim], where style mixing
(training only) switches from w(z) to w(z₂) at a random layer.

D is residual: from-RGB, then per size a 3x3 conv, a 2x downsampling and a 3x3 conv, plus a
downsampled 1x1 shortcut, summed and scaled by 1/√2; then the minibatch standard deviation (one
feature, groups of `mbstd_group` consecutive examples), a 3x3 conv, a dense layer and the logit.
Conditional, as the official D: the last layer gives cmap_dim (the 4x4 channels) outputs,
projected onto cmap, an 8-layer mapping (lr multiplier 0.01) of the normalised class embedding:
<out, cmap> / √cmap_dim.

Every layer has equalised learning rate: weights drawn N(0, 1) and scaled by 1/√fan_in when
used. Widths: `width · (image size / feature size)` channels, at most `channel_max` (the
official channel_base / resolution rule).

Measured against the official StyleGAN2-ADA code (issue #32's independent comparison): on
identical weights the two agree to 1e-5, and the official code trained at `configs/
stylegan2_mnist.py`'s settings collapses as this one does (docs/stylegan2.md). Aligned with it:
the conditional D head above, G's class embedding with its bias, fake labels drawn from the data's
labels (`families.gan.step`, `fake_labels="data"`), and Adam's learning rate and betas rescaled
for the lazy regularisers (`family.StyleGAN2Family`). Deviations that remain, none of them
measured on its own: the 2x resampling filters are `jax.image.resize`'s bilinear ones, equal to
StyleGAN2's [1, 3, 3, 1] upfirdn filters in the interior (tested; the border handling differs);
D's second conv of a block runs after the downsampling (4x fewer multiply-adds); `w_avg` moves
once per G update (the official at every training forward pass of the mapping: D's, G's and the
regularisation phases'); the
lazy terms are added to the main update on their steps (the official takes a separate optimizer
step for them); G's outputs are linear while training and clipped to [-1, 1] when sampled.

Randomness: noise comes from the `noise` rng and style mixing from `style_mixing` (the GAN step
passes both); each is drawn for the global batch and sliced per device, so pmap equals jit.
Without them (sampling) the noise is a fixed draw per layer and nothing is mixed.
"""

import math
import zlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from genimg_jax.core import collectives
from genimg_jax.models.common import (
    build_options,
    labels_or_default,
    mbstd_group_size,
    minibatch_stddev,
    spatial_plan,
)
from genimg_jax.models.layers import DIMENSION_NUMBERS

Array = jax.Array
LRELU_GAIN = math.sqrt(2.0)  # leaky ReLU (slope 0.2) outputs are scaled to keep unit variance
W_AVG_BETA = 0.995
D_MAPPING_LAYERS = 8  # the official conditional D's mapping of the class (its default depth)
NOISE_SEED = 2020  # the fixed per-layer noise of sampling


def lrelu(x: Array) -> Array:
    return nn.leaky_relu(x, 0.2) * LRELU_GAIN


def normalize_2nd_moment(x: Array, eps: float = 1e-8) -> Array:
    """x / sqrt(mean(x², last axis))."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def upsample(x: Array) -> Array:
    """Bilinear 2x: [B, H, W, C] -> [B, 2H, 2W, C] (the [1, 3, 3, 1] filter, borders clamped)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


def downsample(x: Array) -> Array:
    """Antialiased bilinear 1/2: [B, H, W, C] -> [B, H/2, W/2, C] ([1, 3, 3, 1] / 8 per axis,
    stride 2)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h // 2, w // 2, c), "bilinear", antialias=True)


def modulated_conv(
    x: Array, weight: Array, styles: Array, demodulate: bool = True, eps: float = 1e-8
) -> Array:
    """StyleGAN2's modulated convolution, stride 1, "SAME": each example b convolves with its
    own weights w_b[kh, kw, i, o] = weight[kh, kw, i, o] · styles[b, i], divided by
    sqrt(Σ_{kh,kw,i} w_b² + eps) per output o when `demodulate`. Computed as one shared
    convolution of the modulated input, then the per-(b, o) scale (linearity makes them equal).
    x [B, H, W, I], weight [k, k, I, O], styles [B, I] -> [B, H, W, O]."""
    y = lax.conv_general_dilated(
        x * styles[:, None, None, :].astype(x.dtype),
        weight.astype(x.dtype),
        (1, 1),
        "SAME",
        dimension_numbers=DIMENSION_NUMBERS,
    )
    if demodulate:  # Σ_{kh,kw,i} (weight · s_i)² = Σ_i s_i² · Σ_{kh,kw} weight²: [B, O]
        squares = jnp.square(styles.astype(jnp.float32)) @ jnp.sum(jnp.square(weight), (0, 1))
        y = y * lax.rsqrt(squares + eps)[:, None, None, :].astype(y.dtype)
    return y


class EqualDense(nn.Module):
    """Dense with equalised learning rate: W ~ N(0, 1/lr_mul²) used as W·lr_mul/√fan_in, bias
    (init `bias_init`) used times lr_mul; optional leaky ReLU."""

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    activate: bool = False
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        init = lambda key, shape: jax.random.normal(key, shape) / self.lr_mul
        kernel = self.param("kernel", init, (fan_in, self.features))
        y = x @ (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            y = y + (bias * self.lr_mul).astype(y.dtype)
        return lrelu(y) if self.activate else y


class EqualConv(nn.Module):
    """k x k stride-1 "SAME" conv with equalised learning rate (W ~ N(0, 1) used as W/√fan_in),
    bias, optional leaky ReLU."""

    features: int
    kernel_size: int = 3
    activate: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k, fan_in = self.kernel_size, self.kernel_size**2 * x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features)
        )
        kernel = (kernel / math.sqrt(fan_in)).astype(x.dtype)
        y = lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSION_NUMBERS)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return lrelu(y) if self.activate else y


class SynthesisLayer(nn.Module):
    """Modulated, demodulated 3x3 conv of x by w, then noise · strength, bias, leaky ReLU."""

    features: int
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        b, h, wd, channels = x.shape
        styles = EqualDense(channels, bias_init=1.0, name="affine")(w)  # [B, I]
        weight = self.param("kernel", nn.initializers.normal(1.0), (3, 3, channels, self.features))
        y = modulated_conv(x, weight, styles)
        if self.has_rng("noise"):  # [B, H, W, 1]: this device's rows of a global draw
            noise = collectives.normal_rows(self.make_rng("noise"), b, (h, wd, 1), self.axis_name)
        else:  # sampling: a fixed draw per layer
            key = jax.random.fold_in(jax.random.key(NOISE_SEED), zlib.crc32(self.name.encode()))
            noise = jnp.broadcast_to(jax.random.normal(key, (1, h, wd, 1)), (b, h, wd, 1))
        strength = self.param("noise_strength", nn.initializers.zeros, ())
        y = y + (noise * strength).astype(y.dtype)
        return lrelu(y + self.param("bias", nn.initializers.zeros, (self.features,)))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to the image channels, not demodulated (styles scaled by 1/√I), bias."""

    channels: int

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        features = x.shape[-1]
        styles = EqualDense(features, bias_init=1.0, name="affine")(w) / math.sqrt(features)
        weight = self.param("kernel", nn.initializers.normal(1.0), (1, 1, features, self.channels))
        y = modulated_conv(x, weight, styles, demodulate=False)
        return y + self.param("bias", nn.initializers.zeros, (self.channels,))


def num_ws(image_size: int) -> int:
    """ws the synthesis network reads: one per conv (1 at the smallest size, 2 at each larger)
    and one for the last to-RGB."""
    _, doublings = spatial_plan(image_size)
    return 2 + 2 * doublings


def channels_at(size: int, image_size: int, width: int, channel_max: int) -> int:
    """Feature channels at a feature-map size: width · image_size / size, at most channel_max."""
    return min(width * image_size // size, channel_max)


class Generator(nn.Module):
    """z [B, Z] (and labels int32 [B] when conditional) -> images [B, S, S, C]: linear while
    training, clipped to [-1, 1] otherwise, with w truncated by `truncation` (ψ; 1 = none)."""

    image_size: int
    channels: int
    width: int
    channel_max: int
    w_dim: int
    mapping_layers: int
    mixing_prob: float = 0.0
    truncation: float = 1.0
    num_classes: int = 0
    dtype: Any = jnp.float32
    axis_name: str | None = None

    def setup(self):
        self.mapping_net = [
            EqualDense(self.w_dim, lr_mul=0.01, activate=True, name=f"mapping_{i}")
            for i in range(self.mapping_layers)
        ]
        if self.num_classes > 0:
            self.class_embed = EqualDense(self.w_dim, name="class_embed")
        start, doublings = spatial_plan(self.image_size)
        sizes = [start * 2**i for i in range(doublings + 1)]
        chans = [channels_at(s, self.image_size, self.width, self.channel_max) for s in sizes]
        self.const = self.param("const", nn.initializers.normal(1.0), (start, start, chans[0]))
        self.convs = [
            SynthesisLayer(chans[(i + 1) // 2], self.axis_name, name=f"conv_{i}")
            for i in range(1 + 2 * doublings)
        ]
        self.to_rgbs = [ToRGB(self.channels, name=f"to_rgb_{i}") for i in range(doublings + 1)]
        self.w_avg = self.variable("batch_stats", "w_avg", jnp.zeros, (self.w_dim,))

    def mapping(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
        """ws [B, num_ws, w_dim]: w(z) for every layer, mixed with w(z₂) from a random layer on
        (probability `mixing_prob`, training with a `style_mixing` rng), or truncated
        towards w_avg (not training, ψ < 1). Training updates w_avg."""
        labels = labels_or_default(labels, z.shape[0], self.num_classes)
        w = self._map(z, labels)
        if train and not self.is_initializing():
            mean = jnp.mean(w, axis=0)
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
            self.w_avg.value = mean + W_AVG_BETA * (self.w_avg.value - mean)
        count = num_ws(self.image_size)
        ws = jnp.broadcast_to(w[:, None], (w.shape[0], count, self.w_dim))
        if train and self.mixing_prob > 0 and self.has_rng("style_mixing"):
            key = self.make_rng("style_mixing")
            z2_key, cut_key, use_key = jax.random.split(key, 3)
            z2 = collectives.normal_rows(z2_key, z.shape[0], z.shape[1:], self.axis_name)
            w2 = self._map(z2, labels)
            cutoff = jax.random.randint(cut_key, (), 1, count)
            cutoff = jnp.where(jax.random.uniform(use_key) < self.mixing_prob, cutoff, count)
            ws = jnp.where((jnp.arange(count) < cutoff)[None, :, None], ws, w2[:, None])
        if not train and self.truncation != 1.0:
            ws = self.w_avg.value + self.truncation * (ws - self.w_avg.value)
        return ws

    def _map(self, z: Array, labels: Array | None) -> Array:
        x = normalize_2nd_moment(z.astype(jnp.float32))
        if labels is not None:
            onehot = jax.nn.one_hot(labels, self.num_classes)
            x = jnp.concatenate([x, normalize_2nd_moment(self.class_embed(onehot))], axis=-1)
        for layer in self.mapping_net:
            x = layer(x)
        return x

    def synthesis(self, ws: Array, train: bool = False) -> Array:
        """ws [B, num_ws, w_dim] -> images [B, S, S, C] (linear; clipped unless training)."""
        ws = ws.astype(self.dtype)
        x = jnp.broadcast_to(self.const.astype(self.dtype), (ws.shape[0], *self.const.shape))
        x = self.convs[0](x, ws[:, 0])
        image = self.to_rgbs[0](x, ws[:, 1])
        for i, to_rgb in enumerate(self.to_rgbs[1:]):
            x = self.convs[2 * i + 1](upsample(x), ws[:, 2 * i + 1])
            x = self.convs[2 * i + 2](x, ws[:, 2 * i + 2])
            image = upsample(image) + to_rgb(x, ws[:, 2 * i + 3])
        image = image.astype(jnp.float32)
        return image if train else jnp.clip(image, -1.0, 1.0)

    def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
        return self.synthesis(self.mapping(z, labels, train), train)


class DBlock(nn.Module):
    """Residual: (3x3 conv, 2x downsampling, 3x3 conv) + downsampled 1x1 shortcut, over √2."""

    features: int
    out_features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        skip = EqualConv(self.out_features, 1, activate=False, use_bias=False)(downsample(x))
        h = EqualConv(self.features)(x)
        h = EqualConv(self.out_features)(downsample(h))
        return (skip + h) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """images [B, S, S, C] (and labels int32 [B] when conditional) -> logits [B] float32.
    `train` and `update_stats` are accepted for the shared D interface and change nothing."""

    image_size: int
    width: int
    channel_max: int
    mbstd_group: int = 4
    num_classes: int = 0
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(
        self, x: Array, labels: Array | None = None, train: bool = False, update_stats: bool = False
    ) -> Array:
        del train, update_stats
        start, doublings = spatial_plan(self.image_size)
        chans = lambda size: channels_at(size, self.image_size, self.width, self.channel_max)
        h = EqualConv(chans(self.image_size), 1, name="from_rgb")(x.astype(self.dtype))
        size = self.image_size
        for _ in range(doublings):
            h = DBlock(chans(size), chans(size // 2))(h)
            size //= 2
        axis_name = None if self.is_initializing() else self.axis_name  # init runs unmapped
        h = minibatch_stddev(h, mbstd_group_size(self.mbstd_group, x.shape[0], axis_name))
        h = EqualConv(chans(start))(h)
        h = EqualDense(chans(start), activate=True)(h.reshape(x.shape[0], -1))
        labels = labels_or_default(labels, x.shape[0], self.num_classes)
        if labels is None:
            return EqualDense(1)(h)[:, 0].astype(jnp.float32)
        # conditional, as the official D: its output projected onto a mapping of the class,
        # cmap = 8 dense layers (lr multiplier 0.01) of a normalised class embedding
        cmap_dim = chans(start)
        cmap = normalize_2nd_moment(
            EqualDense(cmap_dim, name="class_embed")(jax.nn.one_hot(labels, self.num_classes))
        )
        for i in range(D_MAPPING_LAYERS):
            cmap = EqualDense(cmap_dim, lr_mul=0.01, activate=True, name=f"class_map_{i}")(cmap)
        out = EqualDense(cmap_dim, name="out")(h)
        return (jnp.sum(out * cmap, axis=-1) / math.sqrt(cmap_dim)).astype(jnp.float32)


def build(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
    """G and D sized from `config.data` (image size, channels) and `config.model`."""
    options = build_options(config)
    m = config.model
    g = Generator(
        config.data.image_size,
        config.data.channels,
        m.g_width,
        m.channel_max,
        m.w_dim,
        m.mapping_layers,
        mixing_prob=config.train.style_mixing,
        truncation=config.eval.truncation,
        num_classes=m.num_classes,
        **options,
    )
    d = Discriminator(
        config.data.image_size,
        m.d_width,
        m.channel_max,
        m.mbstd_group,
        m.num_classes,
        **options,
    )
    return g, d
