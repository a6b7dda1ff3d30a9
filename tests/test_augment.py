"""D's augmentation and regularisers for little data: each DiffAugment policy against NumPy,
gradients through it, the same draws under pmap as under jit; LeCam and lazy R1 against NumPy;
a DCGAN with all of them trains and resumes bitwise."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config, resume_copy

from genimg_jax.core import augment, losses
from genimg_jax.families.gan import step as gan_step
from genimg_jax.runtime import parallel
from genimg_jax.training import loop as trainer

X = jax.random.uniform(jax.random.key(0), (8, 16, 16, 3), minval=-1.0, maxval=1.0)


def _np_shift(image, dy, dx):
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_color_is_brightness_then_saturation_then_contrast_with_its_draws():
    key = jax.random.key(1)
    b, s, c = (np.asarray(augment._uniform(k, 8, None)) for k in jax.random.split(key, 3))
    x = np.asarray(X, np.float64) + (b - 0.5)
    x = (x - x.mean(axis=3, keepdims=True)) * (2 * s) + x.mean(axis=3, keepdims=True)
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) * (c + 0.5) + x.mean(
        axis=(1, 2, 3), keepdims=True
    )
    np.testing.assert_allclose(jax.jit(augment.color)(X, key), x, rtol=1e-5, atol=1e-5)


def test_translation_shifts_each_image_by_its_draw_within_an_eighth():
    key = jax.random.key(2)
    shifts = np.asarray(augment._integers(key, 8, -2, 3, None))  # s = round(16 / 8) = 2
    out = np.asarray(jax.jit(augment.translation)(X, key))  # one program, not op by op
    for i in range(8):
        np.testing.assert_array_equal(out[i], _np_shift(np.asarray(X[i]), *shifts[i]))
    many = np.asarray(augment._integers(jax.random.key(3), 4096, -2, 3, None))
    assert many.min() == -2 and many.max() == 2


def test_cutout_zeroes_one_square_of_half_the_side_around_its_centre():
    key = jax.random.key(4)
    centres = np.asarray(augment._integers(key, 8, 0, 17, None))  # size 8: even
    out = np.asarray(jax.jit(augment.cutout)(X, key))
    for i in range(8):
        mask = np.ones((16, 16), bool)
        top, left = centres[i] - 4
        mask[max(top, 0) : max(top + 8, 0), max(left, 0) : max(left + 8, 0)] = False
        np.testing.assert_array_equal(out[i], np.where(mask[..., None], np.asarray(X[i]), 0.0))


def test_diff_augment_keeps_shapes_and_lets_gradients_through():
    policy = augment.parse_policy("color, translation,cutout")
    assert policy == ("color", "translation", "cutout")
    augmented = lambda x: augment.diff_augment(x, jax.random.key(5), policy)
    out = jax.jit(augmented)(X)  # compiled, not op by op
    assert out.shape == X.shape and not np.allclose(out, X)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(augmented(x) ** 2)))(X)
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    assert augment.diff_augment(X, jax.random.key(5), ()) is X


def test_pmap_draws_the_global_batchs_augmentations():
    policy = tuple(augment.POLICIES)
    key = jax.random.key(6)
    expected = jax.jit(augment.diff_augment, static_argnums=2)(X, key, policy)
    mesh = parallel.make_mesh(4)
    fn = jax.pmap(
        functools.partial(augment.diff_augment, policy=policy, axis_name=parallel.AXIS),
        axis_name=parallel.AXIS,
        in_axes=(0, None),
        devices=parallel.local_devices(mesh),
    )
    out = fn(X.reshape(4, 2, 16, 16, 3), key)
    np.testing.assert_allclose(np.asarray(out).reshape(X.shape), expected, rtol=1e-6, atol=1e-6)


def test_lecam_penalty_and_anchors_match_numpy():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=16), rng.normal(size=16)
    penalty = losses.lecam_penalty(jnp.asarray(real), jnp.asarray(fake), 0.3, -0.2)
    expected = np.mean(np.maximum(real - (-0.2), 0) ** 2) + np.mean(np.maximum(0.3 - fake, 0) ** 2)
    np.testing.assert_allclose(penalty, expected, rtol=1e-6)
    anchors, a_real, a_fake = {"lecam_real": 0.0, "lecam_fake": 0.0, "other": 1.0}, 0.0, 0.0
    for step in range(5):
        anchors = losses.lecam_anchors(anchors, real[step], fake[step], 0.9)
        a_real, a_fake = 0.9 * a_real + 0.1 * real[step], 0.9 * a_fake + 0.1 * fake[step]
    np.testing.assert_allclose([anchors["lecam_real"], anchors["lecam_fake"]], [a_real, a_fake])
    assert anchors["other"] == 1.0


def _d_step(config, **kw):
    spec = gan_step.GANStep(
        loss=losses.GAN_LOSSES["non_saturating"],
        latent_dim=config.model.latent_dim,
        ema=gan_step.EMA(0.0, 0.0, 0.0),
        **kw,
    )
    return jax.jit(functools.partial(gan_step.d_step, spec=spec))


def test_lazy_r1_runs_every_nth_d_step_at_n_times_the_penalty(monkeypatch):
    """Also: `lax.cond` (GPU, TPU) and XLA:CPU's select (`gan_step.conditionals_are_slow`)
    are two programs for the same update, on the step the penalty runs and on one it skips."""
    config = load_config("dcgan_mnist")
    s = compiled_state(config)
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)}
    rng = jax.random.key(2)
    lazy_r1 = gan_step.LazyPenalty(10.0, 4)
    plain_step, lazy_step = _d_step(config), _d_step(config, r1=lazy_r1)
    _, plain = plain_step(s, batch, rng)
    _, every = _d_step(config, r1=gan_step.LazyPenalty(10.0, 1))(s, batch, rng)
    ran, lazy = lazy_step(s, batch, rng)  # d.step 0: runs
    assert float(lazy["d_r1"]) == pytest.approx(float(every["d_r1"]), rel=1e-6)
    full = float(every["d_loss"]) - float(plain["d_loss"])
    assert full > 0
    assert float(lazy["d_loss"]) - float(plain["d_loss"]) == pytest.approx(4 * full, rel=1e-4)
    later = s.replace(d=s.d.replace(step=jnp.int32(1)))
    skipped_state, skipped = lazy_step(later, batch, rng)
    _, plain_later = plain_step(later, batch, rng)
    assert float(skipped["d_r1"]) == 0.0
    assert float(skipped["d_loss"]) == pytest.approx(float(plain_later["d_loss"]), rel=1e-6)

    selects = gan_step.conditionals_are_slow()
    other = "cond" if selects else "select"  # train.lazy_regularizers
    assert gan_step.conditionals_are_slow(other) != selects
    other_form = _d_step(config, r1=lazy_r1, lazy=other)
    for start, expected in ((s, ran), (later, skipped_state)):
        new, _ = other_form(start, batch, rng)
        for x, y in zip(jax.tree.leaves(new.d), jax.tree.leaves(expected.d), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_augmented_lecam_lazy_r1_dcgan_trains_g_through_the_augmentation_and_resumes_bitwise(
    tmp_path,
):
    def quick():
        config = load_config("dcgan_mnist")
        config.parallel.num_devices = 1
        config.train.augment = "color,translation,cutout"
        config.train.lecam_weight = 0.3
        config.train.r1_gamma = 1.0
        config.train.r1_interval = 4
        config.train.ada = "blit,geom"
        config.train.ada_kimg = 0.1  # p moves 0.16 per step of 16 images: visibly
        config.eval.every = config.train.steps  # sample grids at the end only
        return config

    config = quick()
    full = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "full")))
    assert float(full.d.stats["lecam_real"]) != 0.0 and float(full.d.stats["lecam_fake"]) != 0.0
    assert 0.0 <= float(full.d.stats["ada_p"]) <= 1.0
    # A run stopped after its step-6 checkpoint: that checkpoint alone in a fresh workdir
    middle = config.train.checkpoint_every
    assert 0 < middle < config.train.steps
    resumed, logged = resume_copy(tmp_path / "full", middle, tmp_path / "resumed", config)
    resumed = jax.device_get(resumed)
    assert logged == [8, 12]  # it trained steps 7 to 12 only
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)

    # G's gradient flows through D's augmentation: it differs from the one without it
    s = compiled_state(config)
    batch = {"image": jnp.zeros((8, 28, 28, 1))}
    g_step = lambda policy: jax.jit(  # compiled, not the step's ops one by one
        functools.partial(
            gan_step.g_step,
            spec=gan_step.GANStep(
                loss=losses.GAN_LOSSES["non_saturating"],
                latent_dim=config.model.latent_dim,
                ema=gan_step.EMA(0.0, 0.0, 0.0),
                augment=policy,
            ),
        )
    )(s, batch, jax.random.key(3))[1]
    with_aug, without = g_step(("translation", "cutout")), g_step(())
    assert float(with_aug["g_grad_norm"]) > 0
    assert float(with_aug["g_grad_norm"]) != pytest.approx(float(without["g_grad_norm"]))


# --------------------------------------------------------------------------------------------
# ADA


def _np_bilinear_reflect(image, matrix):
    """Output pixel (r, c) samples the input at matrix · (c − cx, r − cy, 1) + centre, bilinear
    weights, coordinates reflected at the borders (numpy's 'reflect' padding), loops."""
    h, w, _ = image.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2

    def fold(u, n):
        period = 2 * (n - 1)
        u = u % period
        return period - u if u > n - 1 else u

    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            x, y, _ = matrix @ np.array([c - cx, r - cy, 1.0])
            x, y = fold(x + cx, w), fold(y + cy, h)
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            fx, fy = x - x0, y - y0
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            out[r, c] = (
                image[y0, x0] * (1 - fx) * (1 - fy)
                + image[y0, x1] * fx * (1 - fy)
                + image[y1, x0] * (1 - fx) * fy
                + image[y1, x1] * fx * fy
            )
    return out


def test_warp_flips_rotates_translates_exactly_and_samples_any_affine_map_bilinearly():
    image = np.asarray(X[0])
    warp = jax.jit(augment.warp)  # one program for the four maps, not op by op
    flip = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(warp(X[0], np.float32(flip)), image[:, ::-1], atol=1e-6)
    quarter = np.asarray(augment._rotation(jnp.float32(np.pi / 2)))
    rotated = np.asarray(warp(X[0], quarter))
    np.testing.assert_allclose(rotated, np.rot90(image, k=1), atol=1e-5)  # a quarter turn
    shift = np.asarray(augment._translate(jnp.float32(2.0), jnp.float32(-1.0)))
    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="reflect")
    expected = padded[3 - 1 : 3 - 1 + 16, 3 + 2 : 3 + 2 + 16]  # out(r, c) = in(r − 1, c + 2)
    np.testing.assert_allclose(warp(X[0], shift), expected, atol=1e-6)
    affine = np.array([[0.8, -0.5, 1.3], [0.4, 1.1, -2.2], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        warp(X[0], jnp.asarray(affine, jnp.float32)),
        _np_bilinear_reflect(image.astype(np.float64), affine),
        atol=1e-4,
    )


def test_ada_is_the_identity_at_p_0_and_transforms_each_example_with_probability_p():
    groups = augment.ADA_GROUPS
    ada = jax.jit(augment.ada_augment, static_argnums=3)  # compiled, not op by op
    np.testing.assert_array_equal(ada(X, jax.random.key(8), 0.0, groups), X)
    matrices = jax.jit(augment.ada_matrices, static_argnums=(1, 3, 4))
    m = np.asarray(matrices(jax.random.key(9), 8192, 0.5, ("blit",), 16))
    untouched = np.mean(np.all(np.isclose(m, np.eye(3)), axis=(1, 2)))
    # each transformation left out (1 − p) or kept and drawn as the identity: no flip (1/2), a
    # quarter turn of 0 (1/4), a shift of (0, 0) (1/25): Π_t (1 − p + p·P(identity | t))
    assert untouched == pytest.approx(0.75 * 0.625 * 0.52, abs=0.015)
    out = ada(X, jax.random.key(10), 1.0, groups)
    assert out.shape == X.shape and np.isfinite(out).all() and not np.allclose(out, X)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(ada(x, jax.random.key(10), 1.0, groups))))(X)
    assert np.abs(grad).sum() > 0


def test_ada_p_follows_the_sign_of_d_on_reals_like_a_numpy_loop():
    signs = [0.9, 0.7, 0.2, 0.65, -0.1, 0.8]
    p, ref = jnp.float32(0.0), 0.0
    update = jax.jit(augment.ada_update, static_argnums=(2, 3, 4))
    for r in signs:
        p = update(p, jnp.float32(r), 0.6, 64, 0.5)
        ref = min(max(ref + np.sign(r - 0.6) * 64 / 500, 0.0), 1.0)
        assert float(p) == pytest.approx(ref, abs=1e-6)


def test_a_d_step_moves_p_by_one_batch_towards_the_target():
    config = load_config("dcgan_mnist")
    config.train.ada = "blit,geom"
    s = compiled_state(config)
    s = s.replace(d=s.d.replace(stats={**s.d.stats, "ada_p": jnp.float32(0.5)}))
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)}
    new, metrics = _d_step(config, ada=gan_step.ADA(("blit", "geom"), 0.6, 1.0))(
        s, batch, jax.random.key(2)
    )
    expected = 0.5 + np.sign(float(metrics["ada_rt"]) - 0.6) * 8 / 1000
    assert float(new.d.stats["ada_p"]) == pytest.approx(expected, abs=1e-6)
    assert float(metrics["ada_p"]) == float(new.d.stats["ada_p"])


def test_vectorized_members_keep_their_own_p(tmp_path):
    def member(seed):
        config = load_config("dcgan_mnist")
        config.seed = seed
        config.train.ada = "blit"
        config.train.ada_kimg = 0.1
        config.train.steps = config.train.checkpoint_every = config.eval.every = 4
        config.train.log_every = 2
        return config

    solo = [trainer.train([member(s)], [str(tmp_path / f"solo{s}")])[0] for s in (0, 1)]
    together = trainer.train(
        [member(0), member(1)], [str(tmp_path / f"v{s}") for s in (0, 1)], "vmap"
    )
    for a, b in zip(solo, together, strict=True):
        assert float(b.d.stats["ada_p"]) == pytest.approx(float(a.d.stats["ada_p"]), abs=1e-6)


def test_ema_half_life_in_images_with_ramp_up_matches_stylegan2s_formula():
    for step, batch, kimg, rampup in [
        (0, 32, 10.0, 0.05),
        (50, 32, 10.0, 0.05),
        (10**5, 32, 10.0, 0.05),
        (7, 64, 2.0, 0.0),
    ]:
        half_life = kimg * 1000
        if rampup:
            half_life = min(half_life, step * batch * rampup)
        expected = 0.5 ** (batch / max(half_life, 1e-8))
        got = gan_step.ema_half_life_decay(jnp.int32(step), batch, kimg, rampup)
        assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-30)
    config = load_config("dcgan_mnist")
    config.train.ema_decay, config.train.ema_kimg = 0.0, 1.0  # the half-life alone turns it on
    s = compiled_state(config)
    s = s.replace(g=s.g.replace(step=jnp.int32(9)))
    spec = gan_step.GANStep(
        loss=losses.GAN_LOSSES["non_saturating"],
        latent_dim=config.model.latent_dim,
        ema=gan_step.EMA(0.0, 1.0, 0.0),
    )
    g_step = jax.jit(functools.partial(gan_step.g_step, spec=spec))  # not the ops one by one
    new, _ = g_step(s, {"image": jnp.zeros((8, 28, 28, 1))}, jax.random.key(1))
    decay = 0.5 ** (8 / 1000)  # G's step after its update is 10: no ramp-up
    expected = jax.tree.map(  # in NumPy
        lambda e, p: decay * np.asarray(e) + (1 - decay) * np.asarray(p),
        s.g.ema_params,
        new.g.params,
    )
    for a, b in zip(jax.tree.leaves(new.g.ema_params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
