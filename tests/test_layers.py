"""The fast ConvTranspose: same params, outputs and gradients as flax's, under jit, vmap, bf16."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg_jax.models import layers

Array = jax.Array

# Test data comes from numpy and enters jitted programs as arguments: random numbers drawn
# inside a program from a constant key get constant-folded by XLA, which compiles very slowly.


def normal(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> np.ndarray:
    """Standard normal float32 samples (times `scale`)."""
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def random_params(layer: nn.Module, x: np.ndarray, seed: int) -> dict:
    """Params of `layer` for input `x`, all entries random (the bias too)."""
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    leaves, tree = jax.tree.flatten(shapes)
    new = [normal(leaf.shape, seed + i, 0.3) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(tree, new)


def flax_layer(features: int, kernel: int, stride: int, **kwargs) -> nn.ConvTranspose:
    """The reference: flax's transposed conv with the convention ours replaces."""
    return nn.ConvTranspose(
        features,
        (kernel, kernel),
        (stride, stride),
        padding="SAME",
        transpose_kernel=True,
        **kwargs,
    )


def our_layer(features: int, kernel: int, stride: int, **kwargs) -> layers.ConvTranspose:
    """Ours, configured like `flax_layer`."""
    return layers.ConvTranspose(features, (kernel, kernel), (stride, stride), **kwargs)


def vjp_reference(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """Independent reference: the transpose (VJP) of the forward "SAME" strided conv."""
    batch, height, width, _ = x.shape
    u = jnp.zeros((batch, height * strides[0], width * strides[1], kernel.shape[2]), x.dtype)

    def forward(v: Array) -> Array:  # [B, H*s, W*s, O] -> [B, H, W, I]
        return jax.lax.conv_general_dilated(
            v, kernel, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    _, vjp = jax.vjp(forward, u)
    return vjp(x)[0]


def flax_conv_transpose(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """What flax's layer computes (bias aside)."""
    return jax.lax.conv_transpose(x, kernel, strides, "SAME", transpose_kernel=True)


CASES = [  # (batch, height, width, in_channels, features, kernel, stride)
    (2, 4, 4, 8, 5, 4, 2),
    (3, 5, 7, 3, 4, 4, 2),  # non-square
    (1, 6, 3, 4, 2, 3, 1),
    (2, 5, 4, 6, 3, 3, 2),
    (2, 4, 6, 2, 7, 5, 2),
    (4, 3, 3, 16, 1, 4, 2),  # one output channel, like an image head
]


def assert_matches_flax(cases: list, ours, ref, out_size) -> None:
    """For each case (batch, height, width, in, features, kernel, stride): `ours(features, kernel,
    stride)` and flax's `ref(...)` initialise the same params (shapes and kernel), and with the
    same random params give the same output and the same gradients (params and input) of a
    random linear functional of it. `out_size(size, stride)` is an output side's length."""
    data = []  # per case: x [B, H, W, I], probe shaped like the output, params
    for i, (b, h, w, cin, cout, k, s) in enumerate(cases):
        x = normal((b, h, w, cin), 10 * i)
        probe = normal((b, out_size(h, s), out_size(w, s), cout), 10 * i + 1)
        data.append((x, probe, random_params(ref(cout, k, s), x, 10 * i + 2)))

    @jax.jit
    def run(key: Array, data: list) -> list[dict]:  # every case in one program
        outs = []
        for (b, h, w, cin, cout, k, s), (x, probe, params) in zip(cases, data):
            pair = {"ours": ours(cout, k, s), "flax": ref(cout, k, s)}
            out = {"init": tuple(layer.init(key, x) for layer in pair.values())}
            for name, layer in pair.items():

                def functional(p: dict, v: Array, layer: nn.Module = layer, probe=probe) -> Array:
                    return jnp.vdot(probe, layer.apply(p, v))  # a random linear functional of y

                out[name] = (layer.apply(params, x), jax.grad(functional, (0, 1))(params, x))
            outs.append(out)
        return outs

    for (b, h, w, cin, cout, k, s), out in zip(cases, run(jax.random.key(0), data)):
        case = f"x {(b, h, w, cin)} -> {cout} features, kernel {k}, stride {s}"
        our_vars, ref_vars = out["init"]
        assert jax.tree.map(jnp.shape, our_vars) == jax.tree.map(jnp.shape, ref_vars), case
        np.testing.assert_array_equal(
            our_vars["params"]["kernel"], ref_vars["params"]["kernel"], err_msg=case
        )
        (y, (dp, dx)), (ref_y, (ref_dp, ref_dx)) = out["ours"], out["flax"]
        assert y.shape == (b, out_size(h, s), out_size(w, s), cout), case
        assert float(jnp.std(y)) > 0.1, case  # not trivially zero
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5, err_msg=case)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-4, err_msg=case)
        for name in ("kernel", "bias"):
            got, want = dp["params"][name], ref_dp["params"][name]
            assert got.dtype == want.dtype == jnp.float32, case
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=f"{case} d{name}")


def test_params_outputs_and_gradients_match_flax():
    assert_matches_flax(CASES, our_layer, flax_layer, lambda size, stride: size * stride)


def test_pure_function_is_the_transpose_of_the_same_strided_conv_for_all_k_and_s():
    grid = [(k, s) for k in range(1, 7) for s in (1, 2, 3)]
    x = normal((2, 4, 5, 3), 0)
    kernels = [normal((k, k, 2, 3), k + 10 * s) for k, s in grid]

    @jax.jit
    def run(x: Array, kernels: list[Array]) -> list[tuple[Array, Array, Array]]:
        out = []
        for (k, s), kernel in zip(grid, kernels):
            strides = (s, s)
            out.append(
                (
                    layers.conv_transpose(x, kernel, strides),
                    vjp_reference(x, kernel, strides),
                    flax_conv_transpose(x, kernel, strides),
                )
            )
        return out

    for (k, s), (y, vjp_y, flax_y) in zip(grid, run(x, kernels)):
        assert y.shape == (2, 4 * s, 5 * s, 2), (k, s)
        np.testing.assert_allclose(y, vjp_y, rtol=1e-5, atol=1e-5, err_msg=f"k={k} s={s}")
        np.testing.assert_allclose(y, flax_y, rtol=1e-5, atol=1e-5, err_msg=f"k={k} s={s}")


def test_backward_is_made_of_forward_convolutions():
    x, kernel, g = jnp.ones((2, 4, 4, 3)), jnp.ones((4, 4, 5, 3)), jnp.ones((2, 8, 8, 5))
    _, vjp = jax.vjp(layers.conv_transpose, x, kernel)
    eqns = jax.make_jaxpr(vjp)(g).eqns
    convs = [e for e in eqns if e.primitive is jax.lax.conv_general_dilated_p]
    assert len(convs) == 2  # dx and dW, nothing else
    assert all(e.params["lhs_dilation"] == (1, 1) for e in convs)  # no transposed conv
    _, flax_vjp = jax.vjp(lambda v, w: flax_conv_transpose(v, w, (2, 2)), x, kernel)
    flax_eqns = jax.make_jaxpr(flax_vjp)(g).eqns
    assert any(
        e.primitive is jax.lax.conv_general_dilated_p and e.params["lhs_dilation"] != (1, 1)
        for e in flax_eqns
    )  # flax's dW is the slow lhs-dilated one


def test_mixed_strides_and_no_batch_dims():
    x = normal((3, 5, 4), 0)  # unbatched [H, W, C]
    ref = nn.ConvTranspose(2, (4, 3), (1, 2), padding="SAME", transpose_kernel=True)
    ours = layers.ConvTranspose(2, (4, 3), (1, 2))
    params = random_params(ref, x, 1)
    y, ref_y = jax.jit(lambda p, v: (ours.apply(p, v), ref.apply(p, v)))(params, x)
    assert y.shape == (3, 10, 2)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)


def test_jit_and_vmap_over_inputs_and_kernels():
    xs = normal((3, 2, 4, 5, 6), 0)  # [V, B, H, W, I]
    kernels = normal((3, 4, 4, 7, 6), 1)  # [V, kh, kw, O, I]
    probe = normal((3, 2, 8, 10, 7), 2)

    def ours(x: Array, kernel: Array) -> Array:
        return jax.vmap(layers.conv_transpose, in_axes=(0, 0, None))(x, kernel, (2, 2))

    def ref(x: Array, kernel: Array) -> Array:
        return jax.vmap(lambda v, w: flax_conv_transpose(v, w, (2, 2)))(x, kernel)

    @jax.jit
    def run(xs: Array, kernels: Array, probe: Array) -> dict:
        out = {}
        for name, fn in (("ours", ours), ("ref", ref)):

            def functional(x: Array, w: Array, fn=fn) -> Array:
                return jnp.vdot(probe, fn(x, w))

            out[name] = (fn(xs, kernels), jax.grad(functional, argnums=(0, 1))(xs, kernels))
        # vmap over the inputs only, one shared kernel
        out["shared"] = jax.vmap(lambda v: layers.conv_transpose(v, kernels[0], 2))(xs)
        out["shared_ref"] = ref(xs, jnp.broadcast_to(kernels[0], kernels.shape))
        return out

    out = run(xs, kernels, probe)
    (y, grads), (ref_y, ref_grads) = out["ours"], out["ref"]
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["shared"], out["shared_ref"], rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_is_close():
    x = normal((4, 8, 8, 16), 0)
    ours32, ours16 = our_layer(8, 4, 2), our_layer(8, 4, 2, dtype=jnp.bfloat16)
    flax16 = flax_layer(8, 4, 2, dtype=jnp.bfloat16)
    params = random_params(ours32, x, 1)
    assert jax.tree.map(lambda a: a.dtype, jax.eval_shape(ours16.init, jax.random.key(0), x)) == {
        "params": {"kernel": jnp.float32, "bias": jnp.float32}
    }

    @jax.jit
    def run(params: dict, x: Array) -> dict:
        out = {}
        for name, layer in (("32", ours32), ("16", ours16), ("flax16", flax16)):

            def loss(p: dict, layer: nn.Module = layer) -> Array:
                return jnp.sum(layer.apply(p, x).astype(jnp.float32) ** 2)

            out[name] = (layer.apply(params, x), jax.grad(loss)(params))
        return out

    out = run(params, x)
    (y32, g32), (y16, g16), (flax_y16, flax_g16) = out["32"], out["16"], out["flax16"]
    assert y16.dtype == jnp.bfloat16
    scale = float(jnp.max(jnp.abs(y32)))
    assert float(jnp.max(jnp.abs(y16.astype(jnp.float32) - y32))) < 0.02 * scale
    np.testing.assert_allclose(
        y16.astype(jnp.float32), flax_y16.astype(jnp.float32), atol=0.02 * scale
    )
    for name in ("kernel", "bias"):
        got = g16["params"][name]
        assert got.dtype == jnp.float32
        for want in (g32["params"][name], flax_g16["params"][name]):
            rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
            assert rel < 0.05, (name, rel)


def test_mixed_dtype_pure_function_promotes():
    x = jnp.asarray(normal((1, 3, 3, 2), 0), jnp.bfloat16)
    kernel = jnp.asarray(normal((4, 4, 2, 2), 1))
    y, dk = jax.jit(  # compiled, not eager op by op
        lambda x, kernel: (
            layers.conv_transpose(x, kernel),
            jax.grad(lambda w: jnp.sum(layers.conv_transpose(x, w.astype(jnp.bfloat16))))(kernel),
        )
    )(x, kernel)
    assert y.dtype == jnp.float32
    assert dk.dtype == jnp.float32 and dk.shape == kernel.shape


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="input channels"):
        layers.conv_transpose(jnp.zeros((1, 3, 3, 2)), jnp.zeros((4, 4, 2, 5)))
    with pytest.raises(ValueError, match="kernel"):
        layers.conv_transpose(jnp.zeros((3, 3, 2)), jnp.zeros((4, 4, 2, 2)))


# The phase (sub-pixel) forward runs for out_features >= PHASE_MIN_FEATURES: these use 9.
WIDE = 9
assert WIDE >= layers.PHASE_MIN_FEATURES


def test_phase_forward_and_gradients_match_flax_for_all_k_and_s():
    grid = [
        (kh, kw, sh, sw)
        for k in range(1, 7)
        for s in (1, 2, 3)
        for kh, kw, sh, sw in [(k, k, s, s), (k, max(k - 1, 1), s, 1)]
    ]  # square, and mixed sizes and strides
    x = normal((2, 4, 5, 3), 0)
    kernels = [normal((kh, kw, WIDE, 3), i) for i, (kh, kw, _, _) in enumerate(grid)]
    probes = [normal((2, 4 * sh, 5 * sw, WIDE), 100 + i) for i, (_, _, sh, sw) in enumerate(grid)]

    @jax.jit
    def run(x: Array, kernels: list[Array], probes: list[Array]) -> list:
        out = []
        for (_, _, sh, sw), kernel, probe in zip(grid, kernels, probes):
            row = []
            for fn in (layers.conv_transpose, flax_conv_transpose):

                def functional(v: Array, w: Array, fn=fn, probe=probe, s=(sh, sw)) -> Array:
                    return jnp.vdot(probe, fn(v, w, s))

                row.append((fn(x, kernel, (sh, sw)), jax.grad(functional, (0, 1))(x, kernel)))
            defined = kernel.shape[0] >= sh and kernel.shape[1] >= sw  # every phase has a tap
            phase = layers._phase_transpose_of_strided_conv if defined else flax_conv_transpose
            row.append(phase(x, kernel, (sh, sw)))
            out.append(row)
        return out

    for (kh, kw, sh, sw), ((y, grads), (ref_y, ref_grads), phase_y) in zip(
        grid, run(x, kernels, probes)
    ):
        case = f"k=({kh},{kw}) s=({sh},{sw})"
        applies = layers.uses_phase_decomposition((kh, kw, WIDE, 3), (sh, sw))
        assert applies == (max(sh, sw) > 1 and kh >= sh and kw >= sw), case
        assert y.shape == (2, 4 * sh, 5 * sw, WIDE), case
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5, err_msg=case)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4, err_msg=case)
        if kh >= sh and kw >= sw:  # the phase decomposition itself, wherever it is defined
            np.testing.assert_allclose(phase_y, ref_y, rtol=1e-5, atol=1e-5, err_msg=case)


@pytest.mark.parametrize("by_padding", [False, True])
def test_phases_interleave_pixel_by_pixel(by_padding):
    """Both ways of interleaving (stacking; interior padding, used from PAD_INTERLEAVE_MIN_BYTES
    of output) against NumPy's strided assignment."""
    for sh, sw in [(2, 2), (3, 2), (1, 3)]:
        phases = [[normal((2, 3, 4, 5), 10 * a + b) for b in range(sw)] for a in range(sh)]
        expected = np.zeros((2, 3 * sh, 4 * sw, 5), np.float32)
        for a in range(sh):
            for b in range(sw):
                expected[:, a::sh, b::sw] = phases[a][b]
        interleave = jax.jit(layers.interleave_phases, static_argnums=1)  # pure data movement
        np.testing.assert_array_equal(interleave(phases, by_padding), expected)


def test_phase_forward_interleaved_by_padding_matches_flax(monkeypatch):
    """The phase forward as it runs for large outputs (the DCGANs' layers at batch 256)."""
    monkeypatch.setattr(layers, "PAD_INTERLEAVE_MIN_BYTES", 0)
    x = normal((2, 4, 5, 3), 0)
    grid = [(4, 4, 2, 2), (3, 2, 2, 1), (5, 5, 3, 3)]
    kernels = [normal((kh, kw, WIDE, 3), kh) for kh, kw, _, _ in grid]

    @jax.jit  # traced here, under the patched threshold
    def run(x: Array, kernels: list[Array]) -> list[tuple[Array, Array]]:
        return [
            (
                layers._phase_transpose_of_strided_conv(x, kernel, (sh, sw)),
                flax_conv_transpose(x, kernel, (sh, sw)),
            )
            for (_, _, sh, sw), kernel in zip(grid, kernels)
        ]

    for (kh, kw, sh, sw), (y, ref_y) in zip(grid, run(x, kernels)):
        np.testing.assert_allclose(
            y, ref_y, rtol=1e-5, atol=1e-5, err_msg=f"k=({kh},{kw}) s=({sh},{sw})"
        )
    kernel = kernels[-1]
    padded = jax.make_jaxpr(lambda v: layers._phase_transpose_of_strided_conv(v, kernel, (3, 3)))
    pads = [e for e in all_eqns(padded(x).jaxpr) if e.primitive is jax.lax.pad_p]
    assert len(pads) == 9  # one per phase: this test ran the padding path


def test_phase_forward_has_no_dilated_conv_and_narrow_heads_keep_the_dilated_one():
    x = jnp.ones((2, 4, 4, 16))

    def lhs_dilations(kernel: Array) -> list[tuple[int, int]]:
        jaxpr = jax.make_jaxpr(lambda v: layers.conv_transpose(v, kernel, 2))(x).jaxpr
        return [e.params["lhs_dilation"] for e in all_eqns(jaxpr) if e.primitive is lax_conv()]

    assert lhs_dilations(jnp.ones((4, 4, WIDE, 16))) == [(1, 1)] * 4  # one conv per phase
    assert lhs_dilations(jnp.ones((4, 4, 1, 16))) == [(2, 2)]  # 1-channel head: dilated


def lax_conv():
    return jax.lax.conv_general_dilated_p


def all_eqns(jaxpr) -> list:
    """The equations of a jaxpr and of the jaxprs nested in it (custom_vjp calls, pjit)."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn)
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)  # ClosedJaxpr -> Jaxpr
            if hasattr(inner, "eqns"):
                out.extend(all_eqns(inner))
    return out


def flax_conv(features: int, kernel: int, stride: int, **kwargs) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME", **kwargs)


CONV_CASES = [  # (batch, height, width, in_channels, features, kernel, stride)
    (2, 8, 8, 16, 12, 4, 2),  # the DownStack layer: phase backward
    (3, 6, 4, 9, 5, 4, 2),  # non-square
    (2, 8, 8, 1, 10, 4, 2),  # image input (1 channel): plain autodiff
    (2, 7, 5, 10, 6, 4, 2),  # sizes not divisible by the stride: plain autodiff
    (2, 5, 6, 8, 3, 3, 1),  # stride 1
]


def test_conv_params_outputs_and_gradients_match_flax():
    ours = lambda cout, k, s: layers.Conv(cout, (k, k), (s, s))
    assert_matches_flax(CONV_CASES, ours, flax_conv, lambda size, stride: -(-size // stride))


def test_conv_pure_function_matches_lax_for_all_k_and_s():
    grid = [(k, s) for k in range(1, 7) for s in (1, 2, 3)]
    u = normal((2, 6, 12, WIDE), 0)  # divisible by 1, 2 and 3
    kernels = [normal((k, k, WIDE, 4), k + 10 * s) for k, s in grid]
    probes = [normal((2, 6 // s, 12 // s, 4), 100 + k + 10 * s) for k, s in grid]

    def ref(v: Array, w: Array, s: int) -> Array:
        return jax.lax.conv_general_dilated(
            v, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    @jax.jit
    def run(u: Array, kernels: list[Array], probes: list[Array]) -> list:
        out = []
        for (k, s), kernel, probe in zip(grid, kernels, probes):
            row = []
            for fn in (layers.conv, ref):

                def functional(v: Array, w: Array, fn=fn, probe=probe, s=s) -> Array:
                    return jnp.vdot(probe, fn(v, w, s))

                row.append((fn(u, kernel, s), jax.grad(functional, (0, 1))(u, kernel)))
            out.append(row)
        return out

    for (k, s), ((y, grads), (ref_y, ref_grads)) in zip(grid, run(u, kernels, probes)):
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5, err_msg=f"k={k} s={s}")
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4, err_msg=f"k={k} s={s}")


def test_conv_backward_has_no_dilated_conv():
    u, kernel, g = jnp.ones((2, 8, 8, 16)), jnp.ones((4, 4, 16, 32)), jnp.ones((2, 4, 4, 32))
    _, vjp = jax.vjp(lambda v, w: layers.conv(v, w, 2), u, kernel)
    convs = [e for e in all_eqns(jax.make_jaxpr(vjp)(g).jaxpr) if e.primitive is lax_conv()]
    assert len(convs) == 5  # dW, and dx as 4 phase convs
    assert all(e.params["lhs_dilation"] == (1, 1) for e in convs)


def test_conv_no_batch_dims_vmap_and_bfloat16():
    x = normal((8, 6, 10), 0)  # unbatched [H, W, C]
    ref, ours = flax_conv(12, 4, 2), layers.Conv(12, 4, 2)
    params = random_params(ref, x, 1)
    ours16 = layers.Conv(12, 4, 2, dtype=jnp.bfloat16)
    xs = normal((3, 2, 8, 6, 10), 2)

    @jax.jit
    def run(params: dict, x: Array, xs: Array) -> dict:
        def loss(p: dict, layer: nn.Module) -> Array:
            return jnp.sum(layer.apply(p, xs[0]).astype(jnp.float32) ** 2)

        return {
            "plain": (ours.apply(params, x), ref.apply(params, x)),
            "vmap": (jax.vmap(lambda v: ours.apply(params, v))(xs), ref.apply(params, xs)),
            "grad16": (jax.grad(loss)(params, ours16), jax.grad(loss)(params, ref)),
        }

    out = run(params, x, xs)
    for name in ("plain", "vmap"):
        y, ref_y = out[name]
        assert y.shape == ref_y.shape, name
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5, err_msg=name)
    g16, g32 = out["grad16"]
    for name in ("kernel", "bias"):
        assert g16["params"][name].dtype == jnp.float32
        rel = float(jnp.linalg.norm(g16["params"][name] - g32["params"][name]))
        assert rel < 0.05 * float(jnp.linalg.norm(g32["params"][name])), name


# materialize: an identity that XLA:CPU computes once, so the transposes feeding weight
# gradients read a buffer instead of recomputing bias, BatchNorm and ReLU inside themselves.

SPECIAL_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, 3e38, -3e38, 1e-40, -1e-45, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_materialize_returns_its_input_bit_for_bit(dtype):
    values = np.concatenate([np.array(SPECIAL_VALUES, np.float32), normal((500,), 0, 100.0)])
    x = jnp.asarray(values, dtype)
    y = jax.jit(layers.materialize)(x)
    assert y.dtype == x.dtype
    # XLA:CPU flushes subnormals to zero in every arithmetic op (the ReLU or bias add that
    # made one would too): those come back as zeros of their sign, everything else unchanged
    x = np.asarray(x.astype(jnp.float32))
    expected = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.copysign(0.0, x), x)
    as_bits = lambda a: np.asarray(a, np.float32).view(np.uint32)
    np.testing.assert_array_equal(as_bits(y.astype(jnp.float32)), as_bits(expected))


def test_materialize_passes_gradients_through_unchanged():
    x, w = normal((3, 4), 0), normal((3, 4), 1)
    loss = lambda v: jnp.sum(jnp.sin(layers.materialize(v)) * w)
    grad, hessian_diag = jax.jit(
        lambda v: (jax.grad(loss)(v), jax.grad(lambda u: jnp.sum(jax.grad(loss)(u)))(v))
    )(x)
    np.testing.assert_allclose(grad, np.cos(x) * w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hessian_diag, -np.sin(x) * w, rtol=1e-6, atol=1e-6)


def test_materialize_divides_on_cpu_only():
    x = jnp.ones((4,))
    lowered = lambda platform: (
        jax.jit(layers.materialize).trace(x).lower(lowering_platforms=(platform,)).as_text()
    )
    assert "divide" in lowered("cpu")
    assert "divide" not in lowered("cuda") and "divide" not in lowered("tpu")


def test_materialized_inputs_keep_elementwise_ops_out_of_the_weight_gradient_transposes():
    # conv -> bias + ReLU -> conv: XLA:CPU transposes the second conv's input for its weight
    # gradient; unmaterialized, it recomputes the bias and ReLU inside that transpose (the slow
    # fused form), materialized it transposes a plain buffer.
    x, w1, w2, b = (
        normal((8, 8, 8, 4), 0),
        normal((3, 3, 4, 16), 1),
        normal((3, 3, 16, 16), 2),
        normal((16,), 3),
    )

    def fused_transposes(between) -> list[str]:
        def loss(w1: Array, w2: Array, b: Array) -> Array:
            h = jax.nn.relu(layers.conv(x, w1) + b)
            return jnp.sum(layers.conv(between(h), w2) ** 2)

        hlo = jax.jit(jax.grad(loss, (0, 1, 2))).lower(w1, w2, b).compile().as_text()
        bodies = hlo.split("\n}\n")  # one computation each
        return [c for c in bodies if " transpose(" in c and " maximum(" in c]

    assert fused_transposes(lambda h: h)  # the premise: XLA fuses the ReLU into a transpose
    assert not fused_transposes(layers.materialize)


def test_other_backends_get_the_plain_convolutions_with_autodiffs_gradients():
    """What GPU and TPU run (the custom gradients are XLA:CPU tuning): flax's numbers, and the
    lhs-dilated convolutions autodiff makes; forced here by `gradients="autodiff"` (the config's
    `train.conv_gradients`)."""
    assert layers.custom_gradients_here()  # this CPU: the tuned layers
    assert not layers.custom_gradients_here("autodiff") and layers.custom_gradients_here("custom")
    # the plain layers have no per-case branches: a square and a non-square case of each
    plain = lambda cout, k, s: our_layer(cout, k, s, gradients="autodiff")
    assert_matches_flax(CASES[:2], plain, flax_layer, lambda size, stride: size * stride)
    ours = lambda cout, k, s: layers.Conv(cout, (k, k), (s, s), gradients="autodiff")
    assert_matches_flax(CONV_CASES[:2], ours, flax_conv, lambda size, stride: -(-size // stride))
    x, kernel, g = jnp.ones((2, 4, 4, 3)), jnp.ones((4, 4, 5, 3)), jnp.ones((2, 8, 8, 5))
    plain_transpose = lambda a, b: layers.conv_transpose(a, b, gradients="autodiff")
    _, vjp = jax.vjp(plain_transpose, x, kernel)
    convs = [e for e in all_eqns(jax.make_jaxpr(vjp)(g).jaxpr) if e.primitive is lax_conv()]
    assert any(e.params["lhs_dilation"] != (1, 1) for e in convs)  # autodiff's, as flax's
