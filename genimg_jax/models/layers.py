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
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

Array = jax.Array
Initializer = Callable[..., Array]

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


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


def _transpose_of_strided_conv(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """f_W^T(x): x [B, H, W, I] -> [B, H*sh, W*sw, O] (an lhs-dilated conv, built by JAX)."""
    batch, height, width, _ = x.shape
    out_shape = (batch, height * strides[0], width * strides[1], kernel.shape[2])
    u = jax.ShapeDtypeStruct(out_shape, x.dtype)
    (y,) = jax.linear_transpose(lambda v: strided_conv(v, kernel, strides), u)(x)
    return y


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


def conv_transpose(x: Array, kernel: Array, strides: int | Sequence[int] = (2, 2)) -> Array:
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
    return _conv_transpose(x.astype(dtype), kernel.astype(dtype), strides)


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

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Upsample `inputs` [*batch, H, W, C] (any number of batch dims, or none)."""
        kernel_size = _pair(self.kernel_size)
        strides = _pair(self.strides)
        batch_shape = inputs.shape[:-3]
        x = inputs.reshape((-1,) + inputs.shape[-3:])  # [B, H, W, C]
        kernel = self.param(
            "kernel", self.kernel_init, kernel_size + (self.features, x.shape[-1]), self.param_dtype
        )  # [kh, kw, features, C]
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv_transpose(x, kernel, strides)  # [B, H*sh, W*sw, features]
        if bias is not None:
            y = y + bias
        return y.reshape(batch_shape + y.shape[1:])


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """An int or a 2-sequence as a 2-tuple of ints."""
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"expected an int or 2 ints, got {value!r}")
    return pair
