"""Step functions change exactly what they should, and compute what they claim."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, tree_all_differ, tree_equal

from genimg_jax import families
from genimg_jax.core import losses
from genimg_jax.core import state as state_lib
from genimg_jax.families.gan import step as gan_step
from genimg_jax.families.vae import step as vae_step

LOSS = losses.GAN_LOSSES["non_saturating"]
pytestmark = pytest.mark.accelerator  # benchmarks/device_check.sh runs these on the GPU


def _spec(config) -> gan_step.GANStep:
    """The unconditional GAN step of `config` with the loss LOSS."""
    return gan_step.GANStep(
        loss=LOSS,
        latent_dim=config.model.latent_dim,
        ema=gan_step.EMA(config.train.ema_decay, 0.0, 0.0),
    )


@pytest.fixture(scope="module")
def gan():
    config = load_config("dcgan_mnist")
    s = families.create_state(config, jax.random.key(0))
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)}
    return config, s, batch


def test_d_step_updates_d_and_leaves_g_untouched(gan):
    config, s, batch = gan
    d_step = jax.jit(functools.partial(gan_step.d_step, spec=_spec(config)))
    new, metrics = d_step(s, batch, jax.random.key(2))
    assert tree_equal(new.g, s.g)  # params, BatchNorm stats, EMA, optimizer, step
    assert tree_all_differ(new.d.params, s.d.params)
    assert int(new.d.step) == 1 and int(new.g.step) == 0
    assert 0 < float(metrics["d_real"]) < 1 and np.isfinite(float(metrics["d_loss"]))


def test_g_step_updates_g_and_ema_and_leaves_d_untouched(gan):
    config, s, batch = gan
    decay = float(state_lib.ema_warmup(config.train.ema_decay, 1))  # G's step after the update
    g_step = jax.jit(functools.partial(gan_step.g_step, spec=_spec(config)))
    new, metrics = g_step(s, batch, jax.random.key(3))
    assert tree_equal(new.d, s.d)
    assert tree_all_differ(new.g.params, s.g.params)
    assert tree_all_differ(new.g.batch_stats, s.g.batch_stats)
    expected_ema = jax.tree.map(
        lambda e, p: decay * e + (1 - decay) * p, s.g.ema_params, new.g.params
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        new.g.ema_params,
        expected_ema,
    )
    assert int(new.g.step) == 1 and int(new.d.step) == 0
    assert np.isfinite(float(metrics["g_loss"]))


def test_g_step_gradient_equals_the_seed_formula_gradient(gan):
    """The G update direction is the gradient of -E[log D(G(z))], written as in the seed."""
    config, s, _ = gan
    z = jax.random.normal(jax.random.key(4), (8, config.model.latent_dim))

    def seed_loss(g_params):
        fake, _ = s.g.apply_fn(s.g.variables(g_params), z, train=True, mutable=["batch_stats"])
        p = jax.nn.sigmoid(s.d.apply_fn(s.d.variables(), fake))
        return -jnp.mean(jnp.log(p))

    def framework_loss(g_params):
        fake, _ = s.g.apply_fn(s.g.variables(g_params), z, train=True, mutable=["batch_stats"])
        return LOSS.g_loss(s.d.apply_fn(s.d.variables(), fake))

    # each compiled as one program (op by op, every layer's ops compile one at a time)
    framework, seed = jax.jit(framework_loss), jax.jit(seed_loss)
    np.testing.assert_allclose(framework(s.g.params), seed(s.g.params), rtol=1e-5)
    g1 = jax.jit(jax.grad(framework_loss))(s.g.params)
    g2 = jax.jit(jax.grad(seed_loss))(s.g.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6), g1, g2)


@pytest.fixture(scope="module")
def vae():
    config = load_config("vae_mnist")
    s = families.create_state(config, jax.random.key(0))
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))}
    return config, s, batch


def test_vae_step_metrics_are_the_elbo_terms(vae):
    config, s, batch = vae
    spec = vae_step.VAEStep(losses.bernoulli_reconstruction, config.model.latent_dim)
    step = jax.jit(functools.partial(vae_step.vae_step, spec=spec))
    rng = jax.random.key(5)
    new, metrics = step(s, batch, rng)
    # Recompute from the same forward pass, with NumPy.
    eps = jax.random.normal(rng, (8, config.model.latent_dim))  # the step's draw, made here
    logits, mean, logvar = s.apply_fn({"params": s.params}, batch["image"], eps)
    x, p = np.asarray(batch["image"], np.float64), jax.nn.sigmoid(np.asarray(logits, np.float64))
    recon = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3)).mean()
    m, lv = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    kl = 0.5 * np.sum(np.exp(lv) + m**2 - 1 - lv, axis=1).mean()
    np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-4)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], recon + config.model.beta * kl, rtol=1e-4)
    assert tree_all_differ(new.params, s.params) and int(new.step) == 1


def test_vae_beta_is_read_from_the_state(vae):
    config, s, batch = vae
    spec = vae_step.VAEStep(losses.bernoulli_reconstruction, config.model.latent_dim)
    step = jax.jit(functools.partial(vae_step.vae_step, spec=spec))
    rng = jax.random.key(6)
    _, m1 = step(s.replace(hparams={**s.hparams, "beta": jnp.float32(0.0)}), batch, rng)
    _, m4 = step(s.replace(hparams={**s.hparams, "beta": jnp.float32(4.0)}), batch, rng)
    np.testing.assert_allclose(m1["loss"], m1["recon"], rtol=1e-6)
    np.testing.assert_allclose(m4["loss"], m4["recon"] + 4 * m4["kl"], rtol=1e-5)
    assert step._cache_size() == 1  # β is traced: one compilation serves every value
