"""A transposed convolution whose backward pass stays on XLA:CPU's fast convolution path.

Why it exists: `flax.linen.ConvTranspose` computes an lhs-dilated convolution, and XLA:CPU lowers
the autodiff weight-gradient of that convolution to a generic loop far off its fast convolution
path (it makes a 32x32 DCGAN step several times slower than PyTorch). A transposed convolution
is the linear transpose of a forward strided convolution `f_W(u) = conv(u, W, stride s)`, so
`conv_transpose` computes `y = f_W^T(x)` and gives it a custom VJP built from forward convolutions
only: `dx = f_W(g)` and `dW = (W -> f_W(g))^T(x)`, the weight-gradient of a forward strided conv.

Padding convention ("SAME", out = in * stride): `f_W` pads each spatial dim of its input (size
in * s) by `lo = max(k - s, 0) // 2` before and `max(k - s, 0) - lo` after, which is XLA/TF "SAME"
for a stride-s conv. Its transpose equals `flax.linen.ConvTranspose(..., padding="SAME",
transpose_kernel=True)` for every kernel size and stride (`lax.conv_transpose` pads the dilated
input by `k - 1 - lo` before), with the same kernel layout `[kh, kw, out_features, in_features]`.

Forward pass without dilation (sub-pixel / phase decomposition): f_W^T itself is an lhs-dilated
conv, which XLA:CPU also runs off its fast path. Output pixel `s·m + a` (phase `a` in 0..s-1)
only sees the kernel taps `t = s·d + a + lo` at input `m - d`, so each of the s·s output phases
is a stride-1 "SAME"-like conv of x with a small sub-kernel (sliced from the flipped W, no
zeros), and the phases interleave (`interleave_phases`). It needs k >= s (every phase has a
tap) and is used for out_features >= `PHASE_MIN_FEATURES` (measured: an image head with 1
channel is faster on the dilated path).

`Conv` is the matching drop-in for `flax.linen.Conv(..., padding="SAME")`: its forward is the same
strided conv, and its custom VJP computes the input-gradient (autodiff makes that an
lhs-dilated conv too) as `f_W^T(g)` by the phase decomposition above.

Both layers convolve `materialize(inputs)`: see there.

All of this is XLA:CPU tuning, measured there: on other backends (GPU, TPU) the layers compute
the same convolutions as flax's, with autodiff's gradients (`custom_gradients_here`), until a
measurement on that backend says otherwise (benchmarks/device_check.sh times the steps there).
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from genimg_jax.core.fields import CONV_GRADIENTS

Array = jax.Array
Initializer = Callable[..., Array]

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _divided_by_one(x: Array) -> Array:
    """x / d with d = min(|x|, 1) * 0 + 1, which is exactly 1 for every x but NaN (infinities
    and signed zeros included; NaN / NaN is NaN), so the result is x bit for bit (subnormals
    aside: XLA:CPU flushes them to zero in every arithmetic op). XLA cannot fold d to a
    constant (0 * v is not 0 for every float v)."""
    return x / (jnp.minimum(jnp.abs(x), 1) * 0 + 1)


@jax.custom_jvp
def materialize(x: Array) -> Array:
    """x, unchanged bit for bit, computed once into a buffer of its own on XLA:CPU (elsewhere
    plain x). Convolution inputs go through it.

    Why: a conv's weight gradient reads its input batch-minor ([C, H, W, B]), so XLA:CPU
    transposes the input first. It also copies cheap elementwise producers (bias add,
    BatchNorm, ReLU) into every consumer, that transpose included, and a transpose fused with
    broadcasts runs on its generic loop emitter, ~10x slower than its tiled plain transpose
    (2.1 against 0.2 ms for [128, 16, 16, 32] here). A float division is an op XLA:CPU never
    copies into a second consumer, so an input that ends in one is computed once, with its
    producers, and the forward conv and the transposes all read that buffer. Measured on the
    2-core benchmark machine: the conv VAE and SN-GAN ResNet steps of `benchmarks/steps.py`
    ran 8% and 13% faster, the DCGAN's as fast (benchmarks/README.md). The gradient passes
    through unchanged."""
    return lax.platform_dependent(x, cpu=_divided_by_one, default=lambda v: v)


materialize.defjvps(lambda tangent, _, x: tangent)


def custom_gradients_here(gradients: str = "auto") -> bool:
    """Whether the phase-decomposition forward and custom VJPs apply: "custom" or "autodiff" as
    `gradients` (the config's `train.conv_gradients`) says; "auto" on XLA:CPU, where they were
    measured faster. "custom" elsewhere measures them there."""
    if gradients not in CONV_GRADIENTS:
        raise ValueError(f"conv gradients {gradients!r}; use one of {', '.join(CONV_GRADIENTS)}")
    return gradients == "custom" if gradients != "auto" else jax.default_backend() == "cpu"


def same_padding(kernel_size: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """Per spatial dim (before, after) padding of the forward stride-s conv: in * s -> in."""
    pads = []
    for k, s in zip(kernel_size, strides, strict=True):
        total = max(k - s, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def strided_conv(u: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """The forward conv f_W: u [B, H*sh, W*sw, O] -> [B, H, W, I] with kernel [kh, kw, O, I]."""
    padding = same_padding(kernel.shape[:2], strides)
    return lax.conv_general_dilated(
        u, kernel, strides, padding, dimension_numbers=DIMENSION_NUMBERS
    )


def _dilated_transpose_of_strided_conv(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """f_W^T(x): x [B, H, W, I] -> [B, H*sh, W*sw, O] (an lhs-dilated conv, built by JAX)."""
    batch, height, width, _ = x.shape
    out_shape = (batch, height * strides[0], width * strides[1], kernel.shape[2])
    u = jax.ShapeDtypeStruct(out_shape, x.dtype)
    (y,) = jax.linear_transpose(lambda v: strided_conv(v, kernel, strides), u)(x)
    return y


def _phase_taps(k: int, s: int, lo: int, a: int) -> tuple[int, int, int]:
    """For output phase `a` of one dim: (start, count, dmax). Output `s·m + a` is the sum over
    d in [dmax - count + 1, dmax] of x[m - d] · W[s·d + a + lo]; in the flipped kernel those taps
    are `start, start + s, ...` (ascending with the window x[m - dmax], ..., x[m - dmin])."""
    dmin = -((a + lo) // s)  # ceil((-a - lo) / s)
    dmax = (k - 1 - a - lo) // s
    return k - 1 - (s * dmax + a + lo), dmax - dmin + 1, dmax


def _phase_transpose_of_strided_conv(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """f_W^T(x) as s_h·s_w stride-1 convs (one per output phase) interleaved: no dilation.
    Needs k >= s in each dim (then every phase has a tap and no padding is negative)."""
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    (lo_h, _), (lo_w, _) = same_padding((kh, kw), strides)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # [kh, kw, I, O] (HWIO), flipped
    phases = []
    for a in range(sh):
        start_h, count_h, dmax_h = _phase_taps(kh, sh, lo_h, a)
        row = []
        for b in range(sw):
            start_w, count_w, dmax_w = _phase_taps(kw, sw, lo_w, b)
            sub = flipped[
                start_h : start_h + sh * (count_h - 1) + 1 : sh,
                start_w : start_w + sw * (count_w - 1) + 1 : sw,
            ]  # [count_h, count_w, I, O]
            padding = [(dmax_h, count_h - 1 - dmax_h), (dmax_w, count_w - 1 - dmax_w)]
            row.append(
                lax.conv_general_dilated(
                    x, sub, (1, 1), padding, dimension_numbers=DIMENSION_NUMBERS
                )  # [B, H, W, O]: output pixels (sh·m + a, sw·n + b)
            )
        phases.append(row)
    return interleave_phases(phases)


# Output size (bytes) from which phases interleave by interior padding rather than by stacking.
# Measured in whole steps on the 2-core benchmark machine: the 32x32 DCGAN at batch 256 (8 and
# 16 MiB outputs) ~3% faster by padding; the conv VAEs (outputs of 2-4 MiB) 1-5% slower.
PAD_INTERLEAVE_MIN_BYTES = 8 * 2**20


def interleave_phases(phases: list[list[Array]], by_padding: bool | None = None) -> Array:
    """phases[a][b]: [B, H, W, O] -> y [B, H*sh, W*sw, O] with y[:, sh·m + a, sw·n + b] =
    phases[a][b][:, m, n]. `by_padding`: None picks by y's size (PAD_INTERLEAVE_MIN_BYTES)."""
    sh, sw = len(phases), len(phases[0])
    batch, height, width, features = phases[0][0].shape
    if by_padding is None:
        by_padding = sh * sw * phases[0][0].nbytes >= PAD_INTERLEAVE_MIN_BYTES
    if by_padding:
        # each phase spread over y by interior padding (zeros between its pixels), summed: one
        # fused pass that writes y once (stacking writes every row first)
        zero = jnp.zeros((), phases[0][0].dtype)
        spread = [
            lax.pad(
                p, zero, [(0, 0, 0), (a, sh - 1 - a, sh - 1), (b, sw - 1 - b, sw - 1), (0, 0, 0)]
            )
            for a, row in enumerate(phases)
            for b, p in enumerate(row)
        ]
        return sum(spread[1:], spread[0])
    rows = [jnp.stack(row, axis=3) for row in phases]  # each [B, H, W, sw, O]
    y = jnp.stack(rows, axis=2)  # [B, H, sh, W, sw, O]
    return y.reshape(batch, height * sh, width * sw, features)


# Output features below which the dilated conv beats the phase convs (an image head, 1-3
# channels: XLA:CPU's fast conv path skips convs with <= 16 features on both sides)
PHASE_MIN_FEATURES = 8


def uses_phase_decomposition(kernel_shape: Sequence[int], strides: tuple[int, int]) -> bool:
    """Whether f_W^T for a [kh, kw, O, I] kernel runs as phase convs (else as a dilated conv)."""
    kh, kw, out_features, _ = kernel_shape
    return (
        max(strides) > 1
        and kh >= strides[0]
        and kw >= strides[1]
        and out_features >= PHASE_MIN_FEATURES
    )


def _transpose_of_strided_conv(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """f_W^T(x): x [B, H, W, I] -> [B, H*sh, W*sw, O], by phase convs where they are faster."""
    if uses_phase_decomposition(kernel.shape, strides):
        return _phase_transpose_of_strided_conv(x, kernel, strides)
    return _dilated_transpose_of_strided_conv(x, kernel, strides)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_transpose(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """conv_transpose on same-dtype operands, with the forward-conv-only VJP."""
    return _transpose_of_strided_conv(x, kernel, strides)


def _conv_transpose_fwd(
    x: Array, kernel: Array, strides: tuple[int, int]
) -> tuple[Array, tuple[Array, Array]]:
    """Primal output and the residuals (x, kernel): the op is bilinear."""
    return _transpose_of_strided_conv(x, kernel, strides), (x, kernel)


def _conv_transpose_bwd(
    strides: tuple[int, int], residuals: tuple[Array, Array], g: Array
) -> tuple[Array, Array]:
    """dx = f_W(g) and dW = weight-gradient of the forward conv W -> f_W(g) at cotangent x."""
    x, kernel = residuals
    # f_W(g) is linear in W: its primal output is dx, its VJP at x is dW
    dx, kernel_vjp = jax.vjp(lambda w: strided_conv(g, w, strides), kernel)  # dx: [B, H, W, I]
    (dkernel,) = kernel_vjp(x)  # [kh, kw, O, I]
    return dx, dkernel


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose(
    x: Array, kernel: Array, strides: int | Sequence[int] = (2, 2), gradients: str = "auto"
) -> Array:
    """Transposed conv, "SAME" (out = in * stride): x [B, H, W, I], kernel [kh, kw, O, I] ->
    [B, H*sh, W*sw, O]; equals `lax.conv_transpose(x, kernel, strides, "SAME",
    transpose_kernel=True)`, with a backward pass made of forward convolutions."""
    strides = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
    if x.ndim != 4 or kernel.ndim != 4 or len(strides) != 2:
        raise ValueError(
            f"conv_transpose takes x [B, H, W, C], kernel [kh, kw, out, in] and 2 strides; got "
            f"x {x.shape}, kernel {kernel.shape}, strides {strides}"
        )
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"kernel [kh, kw, out, in] {kernel.shape} does not take {x.shape[3]} input channels"
        )
    dtype = jnp.result_type(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if not custom_gradients_here(gradients):
        return _dilated_transpose_of_strided_conv(x, kernel, strides)
    return _conv_transpose(x, kernel, strides)


class ConvTranspose(nn.Module):
    """Drop-in for `nn.ConvTranspose(features, kernel_size, strides, padding="SAME",
    transpose_kernel=True)`: [..., H, W, C] -> [..., H*sh, W*sw, features], same params."""

    features: int
    kernel_size: int | Sequence[int] = (4, 4)
    strides: int | Sequence[int] = (2, 2)
    use_bias: bool = True
    dtype: Any = None  # compute dtype; None: promoted from the inputs and params
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    gradients: str = "auto"  # `custom_gradients_here`

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Upsample `inputs` [*batch, H, W, C] (any number of batch dims, or none)."""
        strides = _pair(self.strides)
        kernel_dims = (self.features, inputs.shape[-1])  # [kh, kw, features, C]
        op = lambda x, k: conv_transpose(x, k, strides, self.gradients)
        return _apply_kernel_op(self, inputs, kernel_dims, op)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(u: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """strided_conv on same-dtype operands, with dx = f_W^T(g) (phase convs, no dilation)."""
    return strided_conv(u, kernel, strides)


def _conv_fwd(
    u: Array, kernel: Array, strides: tuple[int, int]
) -> tuple[Array, tuple[Array, Array]]:
    """Primal output and the residuals (u, kernel): the op is bilinear."""
    return strided_conv(u, kernel, strides), (u, kernel)


def _conv_bwd(
    strides: tuple[int, int], residuals: tuple[Array, Array], g: Array
) -> tuple[Array, Array]:
    """du = f_W^T(g); dW = autodiff's weight-gradient of the strided conv (already fast)."""
    u, kernel = residuals
    w = jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)
    (dkernel,) = jax.linear_transpose(lambda v: strided_conv(u, v, strides), w)(g)  # [kh, kw, C, F]
    return _transpose_of_strided_conv(g, kernel, strides), dkernel


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv(
    u: Array, kernel: Array, strides: int | Sequence[int] = (1, 1), gradients: str = "auto"
) -> Array:
    """Conv, "SAME": u [B, H, W, C], kernel [kh, kw, C, F] -> [B, ceil(H/sh), ceil(W/sw), F];
    equals `lax.conv_general_dilated(u, kernel, strides, "SAME")`, with an input-gradient made of
    stride-1 convs where the phase decomposition applies (H, W divisible by the strides)."""
    strides = _pair(strides)
    if u.ndim != 4 or kernel.ndim != 4:
        raise ValueError(
            f"conv takes u [B, H, W, C] and kernel [kh, kw, in, out]; got u {u.shape}, "
            f"kernel {kernel.shape}"
        )
    if kernel.shape[2] != u.shape[3]:
        raise ValueError(
            f"kernel [kh, kw, in, out] {kernel.shape} does not take {u.shape[3]} input channels"
        )
    dtype = jnp.result_type(u, kernel)
    u, kernel = u.astype(dtype), kernel.astype(dtype)
    divisible = u.shape[1] % strides[0] == 0 and u.shape[2] % strides[1] == 0
    custom = custom_gradients_here(gradients)
    if divisible and uses_phase_decomposition(kernel.shape, strides) and custom:
        return _conv(u, kernel, strides)
    # XLA "SAME" (equal to `same_padding` when divisible); plain autodiff elsewhere
    return lax.conv_general_dilated(u, kernel, strides, "SAME", dimension_numbers=DIMENSION_NUMBERS)


class Conv(nn.Module):
    """Drop-in for `nn.Conv(features, kernel_size, strides, padding="SAME")`: [..., H, W, C] ->
    [..., ceil(H/sh), ceil(W/sw), features], same params, faster backward on XLA:CPU."""

    features: int
    kernel_size: int | Sequence[int] = (3, 3)
    strides: int | Sequence[int] = (1, 1)
    use_bias: bool = True
    dtype: Any = None  # compute dtype; None: promoted from the inputs and params
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    gradients: str = "auto"  # `custom_gradients_here`

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Convolve `inputs` [*batch, H, W, C] (any number of batch dims, or none)."""
        kernel_dims = (inputs.shape[-1], self.features)  # [kh, kw, C, features]
        op = lambda u, k: conv(u, k, self.strides, self.gradients)
        return _apply_kernel_op(self, inputs, kernel_dims, op)


def _apply_kernel_op(
    layer: nn.Module,
    inputs: Array,
    kernel_dims: tuple[int, int],
    op: Callable[[Array, Array], Array],
) -> Array:
    """The body both layers share: creates `layer`'s "kernel" [kh, kw, *kernel_dims] and optional
    "bias" [features] params, runs `op(materialize(x) [B, H, W, C], kernel)` in the compute
    dtype over the flattened batch dims of `inputs` [*batch, H, W, C], and adds the bias."""
    batch_shape = inputs.shape[:-3]
    x = inputs.reshape((-1,) + inputs.shape[-3:])  # [B, H, W, C]
    kernel_shape = _pair(layer.kernel_size) + tuple(kernel_dims)
    kernel = layer.param("kernel", layer.kernel_init, kernel_shape, layer.param_dtype)
    bias = (
        layer.param("bias", layer.bias_init, (layer.features,), layer.param_dtype)
        if layer.use_bias
        else None
    )
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=layer.dtype)
    y = op(materialize(x), kernel)  # [B, H', W', features]
    if bias is not None:
        y = y + bias
    return y.reshape(batch_shape + y.shape[1:])


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """An int or a 2-sequence as a 2-tuple of ints."""
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"expected an int or 2 ints, got {value!r}")
    return pair
