"""GAN losses (hinge, Wasserstein, least squares) and gradient penalties (R1, WGAN-GP) against
NumPy references, and their wiring into the D step."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config

from genimg_jax.core import losses
from genimg_jax.families.gan import step as gan_step
from genimg_jax.training import loop as trainer


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(0, 2, 64).astype(np.float32), rng.normal(0, 2, 64).astype(np.float32)


def test_every_loss_is_registered_by_name():
    assert set(losses.GAN_LOSSES) == {"non_saturating", "hinge", "wasserstein", "least_squares"}


def test_hinge_matches_numpy(logits):
    real, fake = logits
    r, f = real.astype(np.float64), fake.astype(np.float64)
    d = np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))
    loss = losses.GAN_LOSSES["hinge"]
    np.testing.assert_allclose(loss.d_loss(real, fake), d, rtol=1e-5)
    np.testing.assert_allclose(loss.g_loss(fake), -np.mean(f), rtol=1e-5)


def test_wasserstein_matches_numpy(logits):
    real, fake = logits
    r, f = real.astype(np.float64), fake.astype(np.float64)
    loss = losses.GAN_LOSSES["wasserstein"]
    np.testing.assert_allclose(loss.d_loss(real, fake), np.mean(f) - np.mean(r), rtol=1e-5)
    np.testing.assert_allclose(loss.g_loss(fake), -np.mean(f), rtol=1e-5)


def test_least_squares_matches_numpy(logits):
    real, fake = logits
    r, f = real.astype(np.float64), fake.astype(np.float64)
    loss = losses.GAN_LOSSES["least_squares"]
    d = 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f**2)
    np.testing.assert_allclose(loss.d_loss(real, fake), d, rtol=1e-5)
    np.testing.assert_allclose(loss.g_loss(fake), 0.5 * np.mean((f - 1) ** 2), rtol=1e-5)


def test_losses_have_their_optimum_where_the_papers_put_it():
    ones, zeros = jnp.ones(4), jnp.zeros(4)
    # hinge: zero once real >= 1 and fake <= -1; LSGAN: zero at D(x) = 1, D(G(z)) = 0
    assert float(losses.hinge_d_loss(2 * ones, -2 * ones)) == 0.0
    assert float(losses.least_squares_d_loss(ones, zeros)) == 0.0
    assert float(losses.least_squares_g_loss(ones)) == 0.0


# --------------------------------------------------------------------------------------------
# Penalties, on a small known D: D(x) = Σ a·x² + w·x + sin(x) per example, whose input gradient
# is 2a·x + w + cos(x). Compared with central finite differences of the same D in NumPy
# (float64) and with that closed form.

SHAPE = (5, 3, 3, 2)  # [B, H, W, C]


def _known_d(a, w, xp):
    def d(x):
        terms = a * x**2 + w * x + xp.sin(x)
        return terms.reshape(x.shape[0], -1).sum(axis=1)

    return d


def _finite_difference_grads(d, x, h=1e-6):
    """∂ D(x_i) / ∂ x_i for each example, by central differences: [B, H·W·C]."""
    flat = x.reshape(x.shape[0], -1)
    grads = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        step = np.zeros_like(flat)
        step[:, j] = h
        up = d((flat + step).reshape(x.shape))
        down = d((flat - step).reshape(x.shape))
        grads[:, j] = (up - down) / (2 * h)
    return grads


@pytest.fixture
def known():
    rng = np.random.default_rng(3)
    a, w = rng.normal(0, 0.5, SHAPE[1:]), rng.normal(0, 0.5, SHAPE[1:])
    real, fake = rng.normal(0, 1, SHAPE), rng.normal(0, 1, SHAPE)
    return a, w, real, fake


def test_r1_penalty_matches_finite_differences(known):
    a, w, real, _ = known
    grads = _finite_difference_grads(_known_d(a, w, np), real)
    closed_form = (2 * a * real + w + np.cos(real)).reshape(SHAPE[0], -1)
    np.testing.assert_allclose(grads, closed_form, rtol=1e-6, atol=1e-6)
    expected = np.mean(np.sum(grads**2, axis=1))
    d_jax = _known_d(jnp.asarray(a, jnp.float32), jnp.asarray(w, jnp.float32), jnp)
    got = jax.jit(functools.partial(losses.r1_penalty, d_jax))(jnp.asarray(real, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_r1_penalty_of_a_linear_d_is_the_squared_weight_norm():
    w = np.arange(18, dtype=np.float32).reshape(3, 3, 2) / 10
    d = lambda x: jnp.sum((x * w).reshape(x.shape[0], -1), axis=1)
    x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2))
    np.testing.assert_allclose(
        jax.jit(functools.partial(losses.r1_penalty, d))(x),
        np.sum(w.astype(np.float64) ** 2),
        rtol=1e-6,
    )


def test_gradient_penalty_matches_finite_differences_on_the_interpolates(known):
    a, w, real, fake = known
    rng = jax.random.key(7)
    eps = np.asarray(losses.interpolation_weights(rng, SHAPE[0]), np.float64)
    assert eps.shape == (SHAPE[0],) and np.all((eps >= 0) & (eps < 1))
    assert len(np.unique(eps)) == SHAPE[0]  # one weight per example
    x_hat = eps[:, None, None, None] * real + (1 - eps[:, None, None, None]) * fake
    grads = _finite_difference_grads(_known_d(a, w, np), x_hat)
    expected = np.mean((np.linalg.norm(grads, axis=1) - 1) ** 2)
    d_jax = _known_d(jnp.asarray(a, jnp.float32), jnp.asarray(w, jnp.float32), jnp)
    got = jax.jit(functools.partial(losses.gradient_penalty, d_jax))(
        jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32), rng
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_gradient_penalty_of_a_unit_norm_linear_d_is_zero_and_its_gradient_finite():
    w = jnp.ones((2, 2, 1)) / 2.0  # ||w|| = 1
    x = jax.random.normal(jax.random.key(1), (3, 2, 2, 1))

    @jax.jit  # one program per use (the penalty, its gradient), not op by op
    def penalty(scale):
        d = lambda v: scale * jnp.sum((v * w).reshape(v.shape[0], -1), axis=1)
        return losses.gradient_penalty(d, x, -x, jax.random.key(2))

    np.testing.assert_allclose(penalty(1.0), 0.0, atol=1e-10)
    np.testing.assert_allclose(penalty(3.0), 4.0, rtol=1e-5)  # (||3w|| - 1)² = 4
    # a constant D has zero input gradient: the penalty is 1 and its gradient stays finite
    assert np.isfinite(float(jax.grad(penalty)(0.0)))
    np.testing.assert_allclose(penalty(0.0), 1.0, rtol=1e-5)


def test_interpolation_weights_under_pmap_are_the_global_draw_sliced():
    devices = jax.local_devices()[:4]
    if len(devices) < 4:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    rng, rows = jax.random.key(5), 3
    global_draw = losses.interpolation_weights(rng, 4 * rows)
    per_device = jax.pmap(
        lambda _: losses.interpolation_weights(rng, rows, "data"),
        axis_name="data",
        devices=devices,
    )(jnp.arange(4))
    np.testing.assert_array_equal(np.asarray(per_device).reshape(-1), global_draw)


# --------------------------------------------------------------------------------------------
# Wiring: the D step adds γ/2·R1 and λ·GP to the loss, and only when asked.


@pytest.fixture(scope="module")
def gan():
    config = load_config("dcgan_mnist")
    s = compiled_state(config)
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)}
    return config, s, batch


def _spec(config, loss: str, **kw) -> gan_step.GANStep:
    """An unconditional GAN step with `loss`, no EMA, and the phases in `kw`."""
    ema = kw.pop("ema", gan_step.EMA(0.0, 0.0, 0.0))
    return gan_step.GANStep(
        loss=losses.GAN_LOSSES[loss], latent_dim=config.model.latent_dim, ema=ema, **kw
    )


@pytest.mark.parametrize("name", ["hinge", "wasserstein", "least_squares"])
def test_d_step_adds_the_weighted_penalties(gan, name):
    config, s, batch = gan
    spec = _spec(config, name)
    step = functools.partial(gan_step.d_step, spec=spec)
    rng = jax.random.key(9)
    _, plain = jax.jit(step)(s, batch, rng)
    assert "d_r1" not in plain and "d_gp" not in plain  # off by default: nothing computed
    penalised = dataclasses.replace(spec, r1=gan_step.LazyPenalty(4.0, 1), gp_weight=10.0)
    _, both = jax.jit(functools.partial(gan_step.d_step, spec=penalised))(s, batch, rng)
    assert float(both["d_r1"]) > 0 and float(both["d_gp"]) > 0
    np.testing.assert_allclose(
        both["d_loss"], plain["d_loss"] + 2.0 * both["d_r1"] + 10.0 * both["d_gp"], rtol=1e-5
    )
    # the same D outputs, from two programs that XLA may fuse differently
    np.testing.assert_allclose(both["d_real"], plain["d_real"], rtol=1e-6)


def test_each_critic_update_takes_its_own_real_batch(gan):
    """WGAN-GP's Algorithm 1: with d_steps=2 and a batch of two draws [B, 2, ...], the step is
    D on draw 0, D on draw 1, then G (a second code path: the pure steps called one by one)."""
    config, s, batch = gan
    second = {"image": jax.random.uniform(jax.random.key(2), (8, 28, 28, 1), minval=-1, maxval=1)}
    fresh = {"image": jnp.stack([batch["image"], second["image"]], axis=1)}
    spec = _spec(
        config, "wasserstein", ema=gan_step.EMA(0.999, 0.0, 0.0), d_steps=2, gp_weight=10.0
    )
    rng = jax.random.key(11)
    whole, _ = jax.jit(functools.partial(gan_step.train_step, spec=spec))(s, fresh, rng)
    d = jax.jit(functools.partial(gan_step.d_step, spec=spec))
    g = jax.jit(functools.partial(gan_step.g_step, spec=spec))
    by_hand, _ = d(s, batch, jax.random.fold_in(rng, 0))
    by_hand, _ = d(by_hand, second, jax.random.fold_in(rng, 1))
    by_hand, _ = g(by_hand, second, jax.random.fold_in(rng, 2))
    for x, y in zip(jax.tree.leaves(whole), jax.tree.leaves(by_hand), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    reused, _ = jax.jit(functools.partial(gan_step.train_step, spec=spec))(
        s, batch, rng
    )  # without the draws axis every D update reads the same batch
    assert not np.allclose(
        np.asarray(reused.d.params["Dense_0"]["kernel"]),
        np.asarray(whole.d.params["Dense_0"]["kernel"]),
    )


def test_r1_penalty_changes_the_d_update(gan):
    config, s, batch = gan
    spec = _spec(config, "hinge")
    rng = jax.random.key(10)
    plain, _ = jax.jit(functools.partial(gan_step.d_step, spec=spec))(s, batch, rng)
    with_r1 = dataclasses.replace(spec, r1=gan_step.LazyPenalty(10.0, 1))
    with_r1, _ = jax.jit(functools.partial(gan_step.d_step, spec=with_r1))(s, batch, rng)
    kernel = lambda st: np.asarray(st.d.params["Dense_0"]["kernel"])
    assert not np.array_equal(kernel(plain), kernel(with_r1))
    assert np.array_equal(with_r1.g.params["Dense_0"]["kernel"], s.g.params["Dense_0"]["kernel"])


def test_wgan_gp_quick_config_trains_with_its_penalty(tmp_path):
    config = load_config("wgan_gp_mnist")
    config.parallel.num_devices = 1
    # its 12 steps, logged every 4; one evaluation and save, at the end (the quick config's every
    # 6 would add one of each that nothing here reads)
    config.train.checkpoint_every = config.eval.every = config.train.steps
    final = trainer.train_and_evaluate(config, str(tmp_path))
    assert int(final.step) == config.train.steps
    assert int(final.d.step) == config.train.steps * config.train.d_steps
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert rows and all(np.isfinite(r["d_gp"]) and r["d_gp"] >= 0 for r in rows)
