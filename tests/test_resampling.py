"""The folded resampling convolutions against their literal forms (lax conv + nearest upsampling
by `jnp.repeat`, + 2x2 average pooling by `nn.avg_pool`): outputs and gradients for several
kernel sizes and odd map sizes, XLA's FLOP count, and the nn.Conv hooks (with the plain conv's)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genimg_jax.models import layers, resampling

DN = ("NHWC", "HWIO", "NHWC")


def literal_conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DN)


def literal_upsample_conv(x, kernel):
    return literal_conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), kernel)


def literal_conv_downsample(x, kernel):
    return nn.avg_pool(literal_conv(x, kernel), (2, 2), strides=(2, 2))


def _inputs(shape, kernel_shape, seed=0):
    kx, kk = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, shape), jax.random.normal(kk, kernel_shape)


def _assert_same_function(op, reference, x, kernel):
    """Equal outputs, and equal gradients of a nonlinear loss w.r.t. x and the kernel; returns
    op's output. Each side is one compiled program (output and gradients), not eager ops."""
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    both = lambda f: jax.jit(lambda x, k: (f(x, k), jax.grad(loss(f), (0, 1))(x, k)))
    out, grads = both(op)(x, kernel)
    expected_out, expected = both(reference)(x, kernel)
    np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    return out


@pytest.mark.parametrize("kh,kw", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (3, 2)])
def test_upsample_conv_is_conv_of_the_upsampled_map(kh, kw):
    x, kernel = _inputs((2, 5, 7, 3), (kh, kw, 3, 4))
    out = _assert_same_function(resampling.upsample_conv, literal_upsample_conv, x, kernel)
    assert out.shape == (2, 10, 14, 4)


@pytest.mark.parametrize("kh,kw", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3)])
@pytest.mark.parametrize("height,width", [(8, 6), (7, 5)])  # odd: the literal path
def test_conv_downsample_is_the_pooled_conv(kh, kw, height, width):
    x, kernel = _inputs((2, height, width, 3), (kh, kw, 3, 4), seed=1)
    out = _assert_same_function(resampling.conv_downsample, literal_conv_downsample, x, kernel)
    assert out.shape == (2, height // 2, width // 2, 4)


# (folded op, its nn.Conv hook, the literal form)
FOLDED = [
    (resampling.upsample_conv, resampling.UPSAMPLE_CONV, literal_upsample_conv),
    (resampling.conv_downsample, resampling.CONV_DOWNSAMPLE, literal_conv_downsample),
]


@pytest.mark.parametrize("op,_,reference", FOLDED)
def test_folded_forms_take_under_half_the_flops(op, _, reference):
    """The point of the module: a 3x3 kernel costs 4/9 of the literal form (XLA's count)."""
    x, kernel = _inputs((4, 16, 16, 32), (3, 3, 32, 32))

    def flops(f):
        cost = jax.jit(f).lower(x, kernel).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        return float(cost["flops"])

    assert flops(op) < 0.5 * flops(reference)


# (nn.Conv hook, the literal form it computes)
HOOKS = [(resampling.SAME_CONV, literal_conv)] + [(hook, ref) for _, hook, ref in FOLDED]


@pytest.mark.parametrize("hook,reference", HOOKS)
def test_nn_conv_hook_keeps_the_variables_of_a_plain_conv(hook, reference):
    x, _ = _inputs((2, 8, 8, 3), (3, 3, 3, 5))
    plain = nn.Conv(5, (3, 3), padding="SAME")
    hooked = nn.Conv(5, (3, 3), padding="SAME", conv_general_dilated=hook)
    variables = plain.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, hooked.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, variables
    )
    params = variables["params"]
    expected = reference(x, params["kernel"]) + params["bias"]
    np.testing.assert_allclose(hooked.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [nn.Conv(4, (3, 3), padding="SAME", conv_general_dilated=hook) for hook, _ in HOOKS]
    + [layers.Conv(4, (4, 4), (2, 2)), layers.ConvTranspose(4)],
)
def test_every_conv_layer_convolves_a_materialized_input(layer):
    """The hooks and genimg's layers pass their input through `layers.materialize` (a division
    on CPU); Flax's own nn.Conv has none."""
    x = jnp.ones((2, 8, 8, 3))
    lowered = lambda m: jax.jit(m.apply).lower(m.init(jax.random.key(0), x), x).as_text()
    assert "stablehlo.divide" in lowered(layer)
    assert "stablehlo.divide" not in lowered(nn.Conv(4, (3, 3), padding="SAME"))


def test_nn_conv_hook_rejects_what_it_does_not_compute():
    x = jnp.ones((1, 8, 8, 3))
    for conv in (
        nn.Conv(
            4, (3, 3), strides=2, padding="SAME", conv_general_dilated=resampling.UPSAMPLE_CONV
        ),
        nn.Conv(4, (3, 3), padding="VALID", conv_general_dilated=resampling.CONV_DOWNSAMPLE),
    ):
        with pytest.raises(ValueError, match="strides 1"):
            conv.init(jax.random.key(0), x)
