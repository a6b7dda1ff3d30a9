"""The StyleGAN2 family: its layers against direct NumPy implementations (modulated convolution,
the [1, 3, 3, 1] resampling, minibatch standard deviation), the path-length penalty against
finite differences, mapping (w_avg, style mixing, truncation, classes), one conditional step
under pmap against jit, lazy path-length regularisation, and the quick config training,
resuming bitwise and sampling."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config, resume_copy, tree_equal

from genimg_jax import families
from genimg_jax.cli import main, sample
from genimg_jax.core import losses
from genimg_jax.families import StyleGAN2Family
from genimg_jax.families.gan import step as gan_step
from genimg_jax.families.stylegan2 import networks as stylegan2
from genimg_jax.runtime import parallel
from genimg_jax.training import loop as trainer


def _numpy_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-1 "SAME" conv by loops: x [H, W, I], w [k, k, I, O] -> [H, W, O]."""
    k, h, wd = w.shape[0], x.shape[0], x.shape[1]
    pad = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((h, wd, w.shape[3]))
    for i in range(h):
        for j in range(wd):
            out[i, j] = np.einsum("abi,abio->o", pad[i : i + k, j : j + k], w)
    return out


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_a_per_example_numpy_convolution(demodulate):
    rng = np.random.default_rng(0)
    x, weight = rng.normal(size=(3, 6, 6, 4)), rng.normal(size=(3, 3, 4, 5))
    styles = rng.normal(size=(3, 4)) + 1.0
    conv = jax.jit(stylegan2.modulated_conv, static_argnums=3)  # one program, not op by op
    out = np.asarray(
        conv(
            jnp.asarray(x, jnp.float32),
            jnp.asarray(weight, jnp.float32),
            jnp.asarray(styles, jnp.float32),
            demodulate,
        )
    )
    for b in range(3):
        w_b = weight * styles[b][None, None, :, None]  # the example's own weights
        if demodulate:
            w_b = w_b / np.sqrt(np.sum(w_b**2, axis=(0, 1, 2)) + 1e-8)
        np.testing.assert_allclose(out[b], _numpy_conv(x[b], w_b), rtol=1e-4, atol=1e-4)
    if demodulate:  # unit-variance inputs keep roughly unit-variance outputs
        assert 0.5 < float(np.std(out)) < 2.0


def test_resampling_is_stylegan2s_1331_filter_in_the_interior():
    x = np.random.default_rng(1).normal(size=(1, 12, 12, 1))
    f = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
    # down: [1, 3, 3, 1] / 8 per axis at stride 2, taps 2m - 1 .. 2m + 2
    down = np.asarray(jax.jit(stylegan2.downsample)(jnp.asarray(x, jnp.float32)))[0, :, :, 0]
    for m in range(1, 5):
        for n in range(1, 5):
            patch = x[0, 2 * m - 1 : 2 * m + 3, 2 * n - 1 : 2 * n + 3, 0]
            np.testing.assert_allclose(down[m, n], f @ patch @ f, rtol=1e-5, atol=1e-6)
    # up: zero insertion, then the filter times 2 per axis: output 2m + 1 is (3 x[m] + x[m+1]) / 4
    # and 2m + 2 is (x[m] + 3 x[m+1]) / 4
    up = np.asarray(jax.jit(stylegan2.upsample)(jnp.asarray(x, jnp.float32)))[0, :, :, 0]
    u = np.zeros((24, 12))
    for m in range(11):
        u[2 * m + 1, m : m + 2] = [0.75, 0.25]
        u[2 * m + 2, m : m + 2] = [0.25, 0.75]
    expected = u @ x[0, :, :, 0] @ u.T
    np.testing.assert_allclose(up[1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-5, atol=1e-6)


def _tiny():
    """The quick config at 16 px, class-conditional (3 classes), with the paper's intervals."""
    config = load_config("stylegan2_mnist")
    config.data.image_size = 16
    config.model.num_classes = 3
    config.parallel.num_devices = 1
    config.train.r1_interval, config.train.pl_interval = 16, 4
    return config


@pytest.fixture(scope="module")
def tiny():
    config = _tiny()
    return config, compiled_state(config)


def test_path_lengths_match_finite_differences(tiny):
    """||J_wᵀ y|| of G's synthesis, the gradient from central differences along every axis of
    ws (float32, so a loose tolerance; lrelu kinks crossed by ±h add a little)."""
    config, s = tiny
    g = s.g
    variables = g.variables()
    z = jax.random.normal(jax.random.key(1), (2, config.model.latent_dim))
    ws = jax.jit(lambda z: g.apply_fn(variables, z, method="mapping"))(z)
    synthesis = lambda w: g.apply_fn(variables, w, method="synthesis", train=True)
    y = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
    lengths = np.asarray(jax.jit(lambda w: losses.path_lengths(synthesis, w, y))(ws))

    probe = lambda w: jnp.sum(synthesis(w) * y, axis=(1, 2, 3)) / 16.0  # <G(w), y>/√(HW) [B]
    h = 1e-2
    eye = np.eye(ws[0].size, dtype=np.float32).reshape(-1, *ws.shape[1:])
    diff = jax.jit(jax.vmap(lambda e: (probe(ws + h * e) - probe(ws - h * e)) / (2 * h)))(eye)
    grads = np.asarray(diff).T.reshape(ws.shape)  # [B, L, D]: example b's own ws
    expected = np.sqrt(np.mean(np.sum(grads**2, axis=2), axis=1))
    np.testing.assert_allclose(lengths, expected, rtol=2e-2)
    assert np.all(lengths > 0)


def test_mapping_tracks_w_avg_mixes_styles_and_truncates(tiny):
    config, s = tiny
    g = s.g
    count = stylegan2.num_ws(16)
    z = jax.random.normal(jax.random.key(3), (4, config.model.latent_dim))

    @jax.jit  # the three mappings as one program, not every layer's ops one by one
    def mappings(variables, z):
        w = g.apply_fn(variables, z, method="mapping")[:, 0]
        ws, updates = g.apply_fn(
            variables, z, method="mapping", train=True, mutable=["batch_stats"]
        )
        mixed, _ = g.apply_fn(
            variables,
            z,
            method="mapping",
            train=True,
            rngs={"style_mixing": jax.random.key(4)},
            mutable=["batch_stats"],
        )  # probability 0.9 for this key draws a cutoff c in [1, num_ws): layers >= c read w(z₂)
        return w, ws, updates["batch_stats"]["w_avg"], mixed

    w, ws, w_avg, mixed = (np.asarray(a) for a in mappings(g.variables(), z))
    np.testing.assert_allclose(ws, np.broadcast_to(w[:, None], ws.shape), rtol=1e-6)  # no rng
    # w_avg from 0: (1 - 0.995) · mean(w)
    np.testing.assert_allclose(w_avg, 0.005 * np.mean(w, axis=0), rtol=1e-5, atol=1e-8)

    same = np.all(np.isclose(mixed, w[:, None]), axis=(0, 2))
    cutoff = int(np.argmin(same))
    assert 1 <= cutoff < count and same[:cutoff].all() and not same[cutoff:].any()
    assert np.allclose(mixed[:, cutoff:], mixed[:, -1:])  # one w(z₂) per example after it

    variables = {"params": g.params, "batch_stats": {"w_avg": jnp.ones_like(w_avg)}}
    g_half = families.of(config).build(_with_truncation(config, 0.5))[0]
    g_zero = families.of(config).build(_with_truncation(config, 0.0))[0]

    @jax.jit
    def truncated(variables, z):
        return g_half.apply(variables, z, method="mapping"), g_zero.apply(variables, z)

    ws_half, images = (np.asarray(a) for a in truncated(variables, z))
    expected = np.broadcast_to(1.0 + 0.5 * (w[:, None] - 1.0), ws_half.shape)
    np.testing.assert_allclose(ws_half, expected, rtol=1e-5, atol=1e-6)  # w_avg + ψ·(w − w_avg)
    # ψ = 0: every w is w_avg, and sampling noise is fixed
    assert images.shape == (4, 16, 16, 1) and np.allclose(images, images[:1], atol=1e-6)
    assert float(np.max(np.abs(images))) <= 1.0


def test_the_class_changes_w_and_ds_output(tiny):
    """Conditional: the class embedding enters the mapping (so every w), the projection D."""
    config, s = tiny
    z = np.repeat(jax.random.normal(jax.random.key(7), (1, config.model.latent_dim)), 3, 0)
    labels = np.arange(3, dtype=np.int32)
    x = jnp.broadcast_to(jax.random.uniform(jax.random.key(8), (1, 16, 16, 1)), (3, 16, 16, 1))

    @jax.jit  # one program, not every layer's ops one by one
    def forward(g, d, z, x, labels):
        return g.apply_fn(g.variables(), z, labels, method="mapping"), d.apply_fn(
            d.variables(), x, labels
        )

    ws, logits = (np.asarray(a) for a in forward(s.g, s.d, z, x, labels))
    assert not np.allclose(ws[0], ws[1]) and not np.allclose(ws[1], ws[2])
    assert len(set(logits.round(6))) == 3


def _with_truncation(config, psi):
    config = config.copy_and_resolve_references()
    config.eval.truncation = psi
    return config


def _g_step(config, axis_name=None):
    """The family's G update (its D update is the other GANs', tested with them)."""
    spec = families.of(config).step_spec(config)
    return functools.partial(gan_step.g_step, spec=spec, axis_name=axis_name)


def test_a_pmap_g_step_equals_the_jit_step_and_path_length_regularisation_is_lazy(tiny):
    """G step 0 runs the path-length term; noise, style mixing, D's minibatch std, w_avg and
    the path-length target are global-batch quantities, so 2 devices' pmap equals jit on the
    global batch."""
    config, s = tiny
    batch = {
        "image": jax.random.uniform(jax.random.key(5), (8, 16, 16, 1), minval=-1, maxval=1),
        "label": np.arange(8, dtype=np.int32) % 3,
    }
    key = jax.random.key(6)
    jit_step = jax.jit(_g_step(config))
    new, metrics = jit_step(s, batch, key)
    assert float(metrics["g_pl"]) > 0
    target = float(new.g.stats["pl_mean"])
    assert target > 0  # 0 + 0.01 · (mean path length)

    pmap_config = config.copy_and_resolve_references()
    pmap_config.parallel.strategy = "pmap"  # modules that reduce over the device axis
    s_pmap = compiled_state(pmap_config)
    assert tree_equal(jax.tree.leaves(s_pmap), jax.tree.leaves(s))
    pmapped = jax.pmap(
        _g_step(pmap_config, parallel.AXIS),
        axis_name=parallel.AXIS,
        in_axes=(None, 0, None),
        out_axes=(None, None),
        devices=parallel.local_devices(parallel.make_mesh(2)),
    )  # 2 devices of 4 rows: minibatch-std groups of 4 lie on one device
    local = jax.tree.map(lambda x: x.reshape(2, 4, *x.shape[1:]), batch)
    p_new, p_metrics = pmapped(s_pmap, local, key)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(p_new), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    for name in metrics:
        np.testing.assert_allclose(metrics[name], p_metrics[name], rtol=2e-4, atol=1e-6)

    after, later = jit_step(new, batch, key)  # G step 1 of 4: no path-length term
    assert float(later["g_pl"]) == 0.0 and float(after.g.stats["pl_mean"]) == target


def test_stylegan2_is_a_registered_gan_family_with_stylegan2s_recipe():
    assert isinstance(families.get("stylegan2"), StyleGAN2Family)
    config = load_config("stylegan2_mnist", None)
    t = config.train
    assert (t.b1, t.b2, t.r1_interval, t.pl_interval, t.style_mixing) == (0.0, 0.99, 16, 4, 0.9)
    assert (t.ema_kimg, t.ema_rampup, t.pl_weight, t.pl_decay) == (10.0, 0.05, 2.0, 0.01)


def _quick():
    """The quick config at 16 px (what it checks, resume and sampling, is size-free), one device,
    sample grids at the end only (its checkpoints still every 6 steps of 12)."""
    config = load_config("stylegan2_mnist")
    config.data.image_size = 16
    config.parallel.num_devices = 1
    config.eval.every = config.train.steps
    return config


def test_quick_config_trains_resumes_bitwise_and_samples(tmp_path):
    config = _quick()
    full = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "full")))
    assert int(full.step) == config.train.steps and float(full.g.stats["pl_mean"]) > 0
    assert np.any(np.asarray(full.g.batch_stats["w_avg"]) != 0)

    # A run stopped after its step-6 checkpoint: that checkpoint alone in a fresh workdir
    middle = config.train.checkpoint_every
    assert 0 < middle < config.train.steps
    resumed, logged = resume_copy(tmp_path / "full", middle, tmp_path / "resumed", config)
    assert logged == [8, 12]  # it trained steps 7 to 12 only
    assert tree_equal(jax.device_get(resumed), full)
    assert os.path.exists(tmp_path / "resumed" / "samples" / "samples_000012.png")

    images = sample.draw(config, str(tmp_path / "full"), 5)
    assert images.shape == (5, 16, 16, 1) and np.abs(images).max() <= 1.0
    assert not np.allclose(images, images[:1])
    out = str(tmp_path / "flat.npz")  # ψ = 0: every sample is the image of w_avg
    argv = ["genimg", "sample", "--workdir", str(tmp_path / "full"), "--num", "5"]
    truncated = [*argv, "--config.eval.truncation=0", "--format", "npz", "--out", out]
    assert main.main(truncated) == 0
    flat = np.load(out)["images"]
    assert flat.shape == (5, 16, 16, 1) and np.all(flat == flat[:1])
