"""Building blocks shared by the model families: the down- and up-sampling conv stacks."""

from collections.abc import Callable

import flax.linen as nn
import jax

from genimg_jax.models.layers import ConvTranspose

Array = jax.Array
SUPPORTED_IMAGE_SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # size -> (start size, doublings)

# A transposed-conv kernel is [kh, kw, out, in]: its fan-in is kh·kw·in (axis -1), not the
# default axis -2 (LeCun init from the default would scale the 64->1 output layer by 8x).
TRANSPOSED_KERNEL_INIT = nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2
)


def spatial_plan(image_size: int) -> tuple[int, int]:
    """The smallest feature-map size and the number of 2x resamplings for an image size."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image size {image_size} is not supported; use one of {sorted(SUPPORTED_IMAGE_SIZES)}"
        )
    return SUPPORTED_IMAGE_SIZES[image_size]


def widths(base: int, doublings: int) -> list[int]:
    """Feature widths of the stack, fine to coarse: base, 2·base, 4·base, ..."""
    return [base * 2**i for i in range(doublings)]


class DownStack(nn.Module):
    """Strided 4x4 convs, each halving the size: [B, S, S, C] -> [B, S/2^n, S/2^n, 2^(n-1)·w]."""

    widths: list[int]
    activation: Callable[[Array], Array] = nn.leaky_relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for width in self.widths:
            x = self.activation(nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME")(x))
        return x


class UpStack(nn.Module):
    """4x4 transposed convs, each doubling the size, optionally with BatchNorm, then a last one
    to `out_channels` with no activation: [B, s, s, C] -> [B, s·2^(n+1), s·2^(n+1), out]."""

    widths: list[int]  # coarse to fine
    out_channels: int
    batch_norm: bool = False

    @nn.compact
    def __call__(self, h: Array, train: bool = False) -> Array:
        for width in self.widths:
            h = ConvTranspose(
                width, use_bias=not self.batch_norm, kernel_init=TRANSPOSED_KERNEL_INIT
            )(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
            h = nn.relu(h)
        return ConvTranspose(self.out_channels, kernel_init=TRANSPOSED_KERNEL_INIT)(h)
