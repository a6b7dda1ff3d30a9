"""Losses against independent NumPy / SciPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from genimg_jax.core import losses


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, 32).astype(np.float32), rng.normal(0, 3, 32).astype(np.float32)


def test_d_loss_matches_seed_formula(logits):
    real, fake = logits
    r, f = _sigmoid(real.astype(np.float64)), _sigmoid(fake.astype(np.float64))
    expected = -np.mean(np.log(r)) - np.mean(np.log(1 - f))
    got = losses.non_saturating_d_loss(jnp.asarray(real), jnp.asarray(fake))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_g_loss_matches_seed_formula(logits):
    _, fake = logits
    expected = -np.mean(np.log(_sigmoid(fake.astype(np.float64))))
    np.testing.assert_allclose(losses.non_saturating_g_loss(jnp.asarray(fake)), expected, rtol=1e-5)


def test_gan_losses_stay_finite_for_extreme_logits():
    extreme = jnp.array([-200.0, -50.0, 0.0, 50.0, 200.0])
    d = losses.non_saturating_d_loss(extreme, extreme)
    g = losses.non_saturating_g_loss(extreme)
    grads = jax.grad(lambda x: losses.non_saturating_d_loss(x, x))(extreme)
    assert np.isfinite(d) and np.isfinite(g) and np.all(np.isfinite(grads))
    # -log sigmoid(-200) = 200 exactly in the limit: the stable form keeps it.
    np.testing.assert_allclose(losses.non_saturating_g_loss(jnp.array([-200.0])), 200.0, rtol=1e-6)


def test_gaussian_kl_matches_numerical_integration():
    mean, logvar = np.array([0.7, -1.3]), np.array([-0.5, 0.8])
    expected = 0.0
    for m, lv in zip(mean, logvar):
        q = stats.norm(m, np.exp(0.5 * lv))
        expected += integrate.quad(
            lambda z, q=q: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z)), -30, 30
        )[0]
    got = losses.gaussian_kl(
        jnp.asarray(mean[None], jnp.float32), jnp.asarray(logvar[None], jnp.float32)
    )
    np.testing.assert_allclose(got, [expected], rtol=1e-5)


def test_gaussian_kl_is_zero_at_the_prior():
    assert float(losses.gaussian_kl(jnp.zeros((1, 8)), jnp.zeros((1, 8)))[0]) == 0.0


def test_reconstruction_losses_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (4, 5, 5, 1)).astype(np.float32)
    logits = rng.normal(0, 2, x.shape).astype(np.float32)
    p = _sigmoid(logits.astype(np.float64))
    mse = np.sum((x - p) ** 2, axis=(1, 2, 3))
    bern = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    np.testing.assert_allclose(losses.mse_reconstruction(x, logits), mse, rtol=1e-5)
    np.testing.assert_allclose(losses.bernoulli_reconstruction(x, logits), bern, rtol=1e-5)


def test_vae_loss_weights_kl_by_beta():
    recon, kl = jnp.array([3.0, 5.0]), jnp.array([1.0, 2.0])
    np.testing.assert_allclose(losses.vae_loss(recon, kl, 4.0), 4.0 + 4.0 * 1.5)
    np.testing.assert_allclose(losses.vae_loss(recon, kl, 0.0), 4.0)
