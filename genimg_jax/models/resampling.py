"""The ResNet GAN's resampling convolutions, each computed as one cheaper convolution.

SN-GAN's G convolves a nearest-neighbour 2x upsampled map, and its D average-pools a
convolution's output 2x2. Both compositions are linear, so each equals a convolution at the
coarse resolution with a kernel made from the same weights W [k, k, C, F] (stride 1, "SAME",
padding `lo = (k - 1) // 2` before):

- `upsample_conv(x, W) = conv(upsample(x), W)`. Per spatial dim, output pixel `2m + a` (phase
  `a` in {0, 1}) reads upsampled pixels `2m + a + t - lo` (taps t < k), which are the input pixels
  `m + (a + t - lo) // 2`. Taps that read the same pixel are summed into one (for k = 3: 2 taps
  per dim instead of 3), so each of the four output phases is a stride-1 convolution of x, and
  the phases interleave (`layers.interleave_phases`).
- `conv_downsample(x, W) = downsample(conv(x, W))`. Per dim, the pooled output
  `(y[2m] + y[2m + 1]) / 2` is a stride-2 convolution of x with the (k+1)-tap kernel
  `V[u] = (W[u] + W[u - 1]) / 2`, the same padding before; it runs as `layers.conv` (an
  input-gradient without dilated convolutions).

For k = 3 both do 4/9 of the literal form's multiply-adds (the 32x32 SN-GAN step of
`benchmarks/steps.py` went from ~470 to ~370 ms). The results equal the literal forms up to
float rounding. The weights stay W, so a Flax `nn.Conv` computes either op through its
`conv_general_dilated` hook (`UPSAMPLE_CONV`, `CONV_DOWNSAMPLE`) with the same variables as the
literal form, spectral normalisation included. `SAME_CONV` is the plain stride-1 conv as a hook.
Every hook convolves `layers.materialize(x)`, as `layers.Conv` does.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genimg_jax.models.layers import (
    DIMENSION_NUMBERS,
    conv,
    interleave_phases,
    materialize,
    same_padding,
)

Array = jax.Array


def upsample(x: Array) -> Array:
    """Nearest-neighbour 2x: [B, H, W, C] -> [B, 2H, 2W, C]."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x: Array) -> Array:
    """2x2 average pooling: [B, H, W, C] -> [B, H // 2, W // 2, C]."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _same_conv(x: Array, kernel: Array) -> Array:
    """Stride-1 "SAME" conv: x [B, H, W, C], kernel [k, k, C, F] -> [B, H, W, F]."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSION_NUMBERS)


def _phase_kernel(kernel: Array, axis: int, phase: int, lo: int) -> tuple[Array, int, int]:
    """Along `axis` of `kernel`: the taps of upsampled phase `phase` summed per input pixel they
    read, and the (before, after) padding of the stride-1 conv that applies them."""
    source = [(phase + t - lo) // 2 for t in range(kernel.shape[axis])]  # nondecreasing, step <= 1
    taps = [
        sum(jnp.take(kernel, t, axis=axis) for t, s in enumerate(source) if s == offset)
        for offset in range(source[0], source[-1] + 1)
    ]
    return jnp.stack(taps, axis=axis), -source[0], source[-1]


def upsample_conv(x: Array, kernel: Array) -> Array:
    """conv(upsample(x), kernel): x [B, H, W, C], kernel [kh, kw, C, F] -> [B, 2H, 2W, F], as
    four stride-1 convs of x with summed taps."""
    (lo_h, _), (lo_w, _) = same_padding(kernel.shape[:2], (1, 1))
    phases = []
    for a in range(2):
        rows, top, bottom = _phase_kernel(kernel, 0, a, lo_h)
        row = []
        for b in range(2):
            sub, left, right = _phase_kernel(rows, 1, b, lo_w)
            padding = [(top, bottom), (left, right)]
            row.append(
                lax.conv_general_dilated(
                    x, sub, (1, 1), padding, dimension_numbers=DIMENSION_NUMBERS
                )
            )
        phases.append(row)
    # Interleaved by stacking: with interior padding XLA:CPU fused the phases' sum into the
    # transpose before the next layer's weight gradient, which then took 94 ms instead of ~17.
    return interleave_phases(phases, by_padding=False)


def conv_downsample(x: Array, kernel: Array) -> Array:
    """downsample(conv(x, kernel)): x [B, H, W, C], kernel [kh, kw, C, F] -> [B, H/2, W/2, F],
    as one stride-2 conv with a (kh+1) x (kw+1) kernel (the literal form where H or W is odd)."""
    if x.shape[1] % 2 or x.shape[2] % 2:  # pooling drops the last row or column
        return downsample(_same_conv(x, kernel))
    padded = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
    pooled = (padded[1:, 1:] + padded[:-1, 1:] + padded[1:, :-1] + padded[:-1, :-1]) / 4
    return conv(x, pooled, (2, 2))


def _as_conv_hook(op: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    """`op(materialize(x), kernel)` with the signature of `nn.Conv`'s `conv_general_dilated`
    hook, for an `nn.Conv(features, kernel_size, padding="SAME")` (stride 1, no dilation, no
    groups)."""

    def conv_general_dilated(
        lhs: Array,
        rhs: Array,
        window_strides,
        padding,
        lhs_dilation=None,
        rhs_dilation=None,
        dimension_numbers=None,
        feature_group_count: int = 1,
        precision=None,
    ) -> Array:
        del dimension_numbers  # nn.Conv's are channels-last, as `op` expects
        undilated = lambda dilation: dilation is None or tuple(dilation) == (1, 1)
        if (
            tuple(window_strides) != (1, 1)
            or padding != "SAME"
            or not (undilated(lhs_dilation) and undilated(rhs_dilation))
            or feature_group_count != 1
            or precision is not None
            or lhs.ndim != 4
        ):
            raise ValueError(
                f"{op.__name__} is an nn.Conv hook for 2-D convolutions with strides 1, "
                f'padding "SAME", no dilation, groups or precision; got strides '
                f"{window_strides}, padding {padding!r}, dilations {lhs_dilation}/"
                f"{rhs_dilation}, groups {feature_group_count}, precision {precision}, "
                f"input {lhs.shape}"
            )
        return op(materialize(lhs), rhs)

    return conv_general_dilated


SAME_CONV = _as_conv_hook(_same_conv)
UPSAMPLE_CONV = _as_conv_hook(upsample_conv)  # nn.Conv(..., conv_general_dilated=UPSAMPLE_CONV)
CONV_DOWNSAMPLE = _as_conv_hook(conv_downsample)
