"""Building blocks shared by the model families: the down- and up-sampling conv stacks, the
options every family takes from the config (compute dtype, BatchNorm's cross-device axis), the
class labels of conditional GANs, and a D's minibatch standard deviation (ProGAN, StyleGAN2)."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.core.fields import SUPPORTED_IMAGE_SIZES
from genimg_jax.models.layers import Conv, ConvTranspose

Array = jax.Array
WIDEST = 8  # feature widths stop growing at WIDEST x the base width (8 x 64 = 512 channels)
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# A transposed-conv kernel is [kh, kw, out, in]: its fan-in is kh·kw·in (axis -1), not the
# default axis -2 (LeCun init from the default would scale the 64->1 output layer by 8x).
TRANSPOSED_KERNEL_INIT = nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2
)


def conv_gradients(config: ml_collections.ConfigDict) -> str:
    """How the stacks' convolutions take their gradients (`train.conv_gradients`)."""
    return config.train.get("conv_gradients", "auto")


def build_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Options every family's modules take: `dtype` (activations; params stay float32) and
    `axis_name` (BatchNorm statistics over all devices under pmap; jit sees the global batch)."""
    return {
        "dtype": COMPUTE_DTYPES[config.train.compute_dtype],
        "axis_name": "data" if config.parallel.strategy == "pmap" else None,
    }


def fixed_labels(num: int, num_classes: int) -> Array:
    """Class labels for a sample grid of `num` images: 0, 1, ..., K-1, 0, 1, ... (int32 [num]),
    so a grid read row by row shows the classes in order. All zeros when unconditional (K=0)."""
    return jnp.arange(num, dtype=jnp.int32) % max(num_classes, 1)


def model_inputs(x: Array, labels: Array | None) -> tuple:
    """A G's or D's positional inputs: (x,) for an unconditional model, else (x, labels), so
    that models whose __call__ takes no labels are called as they expect."""
    return (x,) if labels is None else (x, labels)


def labels_or_default(labels: Array | None, batch: int, num_classes: int) -> Array | None:
    """A conditional model's labels: the given int32 [B], or `fixed_labels(batch, K)` when None
    (initialisation, and sample grids drawn without labels); None for an unconditional model."""
    if num_classes <= 0:
        return None
    if labels is None:
        return fixed_labels(batch, num_classes)
    return labels.astype(jnp.int32)


def code_head_size(model) -> int:
    """The outputs of InfoGAN's head Q on an unconditional D (`config.model`): K logits of the
    categorical code (`latent_codes`), then C means of the continuous codes
    (`latent_continuous`); 0: no head."""
    return model.get("latent_codes", 0) + model.get("latent_continuous", 0)


def spatial_plan(image_size: int) -> tuple[int, int]:
    """The smallest feature-map size and the number of 2x resamplings for an image size: halved
    while the result stays an integer of at least 4 (28 -> 7 after 2; 32 -> 4 after 3; 256 -> 4
    after 6)."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image size {image_size} is not supported; use one of {list(SUPPORTED_IMAGE_SIZES)}"
        )
    start, doublings = image_size, 0
    while start % 2 == 0 and start // 2 >= 4:
        start, doublings = start // 2, doublings + 1
    return start, doublings


def widths(base: int, doublings: int) -> list[int]:
    """Feature widths of the stack, fine to coarse: base, 2·base, 4·base, ..., at most
    WIDEST·base (so 128 and 256 pixels add blocks, not ever wider ones)."""
    return [base * min(2**i, WIDEST) for i in range(doublings)]


def batch_norm(train: bool, dtype: Any, axis_name: str | None) -> nn.BatchNorm:
    """BatchNorm over the batch (of all devices when `axis_name` is set), momentum 0.9."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, dtype=dtype, axis_name=axis_name
    )


def mbstd_group_size(group: int, rows: int, axis_name: str | None) -> int:
    """The minibatch-std group size for `rows` rows per device: `group`, or the global batch
    when smaller (as StyleGAN2's min(group, batch)). Groups are consecutive rows, so under pmap
    each must lie on one device: a ValueError says what to change when they would not."""
    devices = 1 if axis_name is None else jax.lax.psum(1, axis_name)
    size = min(group, rows * devices)
    if rows % size:
        raise ValueError(
            f"D's minibatch standard deviation takes groups of {size} examples, but a device "
            f"holds {rows}: make train.batch_size a multiple of {size} x the devices, or set "
            "model.mbstd_group to a divisor of the batch per device"
        )
    return size


def minibatch_stddev(x: Array, group: int) -> Array:
    """x [B, H, W, C] with one more channel: the mean over (H, W, C) of the standard deviation
    over each group of `group` consecutive examples (B divisible by it)."""
    b, h, w, c = x.shape
    y = x.reshape(b // group, group, h, w, c).astype(jnp.float32)
    std = jnp.sqrt(jnp.var(y, axis=1) + 1e-8)  # [B / G, H, W, C]
    stat = jnp.mean(std, axis=(1, 2, 3))  # [B / G]
    stat = jnp.broadcast_to(jnp.repeat(stat, group)[:, None, None, None], (b, h, w, 1))
    return jnp.concatenate([x, stat.astype(x.dtype)], axis=-1)


class DownStack(nn.Module):
    """Strided 4x4 convs, each halving the size: [B, S, S, C] -> [B, S/2^n, S/2^n, 2^(n-1)·w]."""

    widths: list[int]
    activation: Callable[[Array], Array] = nn.leaky_relu
    dtype: Any = jnp.float32
    gradients: str = "auto"  # `layers.custom_gradients_here`

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for width in self.widths:
            conv = Conv(width, (4, 4), (2, 2), dtype=self.dtype, gradients=self.gradients)
            x = self.activation(conv(x))
        return x


class UpStack(nn.Module):
    """4x4 transposed convs, each doubling the size, optionally with BatchNorm, then a last one
    to `out_channels` with no activation: [B, s, s, C] -> [B, s·2^(n+1), s·2^(n+1), out]."""

    widths: list[int]  # coarse to fine
    out_channels: int
    batch_norm: bool = False
    dtype: Any = jnp.float32
    axis_name: str | None = None
    gradients: str = "auto"  # `layers.custom_gradients_here`

    @nn.compact
    def __call__(self, h: Array, train: bool = False) -> Array:
        for width in self.widths:
            h = ConvTranspose(
                width,
                use_bias=not self.batch_norm,
                kernel_init=TRANSPOSED_KERNEL_INIT,
                dtype=self.dtype,
                gradients=self.gradients,
            )(h)
            if self.batch_norm:
                h = batch_norm(train, self.dtype, self.axis_name)(h)
            h = nn.relu(h)
        last = ConvTranspose(
            self.out_channels,
            kernel_init=TRANSPOSED_KERNEL_INIT,
            dtype=self.dtype,
            gradients=self.gradients,
        )
        return last(h).astype(jnp.float32)
