"""InfoGAN's categorical code (`model.latent_codes` = K): G takes c ~ U{0..K-1} beside z, a head
Q on D's features predicts it, and both networks add λ·E[-log Q(c | G(z, c))] (Chen et al. 2016),
with no labels; its continuous codes (`model.latent_continuous` = C) are z's first C dims, which
Q predicts as a unit-variance Gaussian's means."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config
from scipy import stats

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core import losses
from genimg_jax.core.errors import ConfigError
from genimg_jax.families.gan import step as gan_step
from genimg_jax.models.common import fixed_labels

K = 10


def _config(name="dcgan_mnist_uncond", weight=1.0, codes=K, continuous=0):
    config = load_config(name)
    config.model.latent_codes = codes
    config.model.latent_continuous = continuous
    config.train.info_weight = weight
    config.parallel.num_devices = 1
    return config_lib.validate(config)


def _batch(b=8):
    return {"image": jax.random.uniform(jax.random.key(1), (b, 28, 28, 1), minval=-1)}


@functools.partial(jax.jit, static_argnames="head")
def _forward(s, *g_inputs, head: bool = True):
    """G's images in training mode on `g_inputs` and (with `head`) Q's head on them, as one
    compiled program (not every layer's ops one by one)."""
    fake, _ = s.g.apply_fn(s.g.variables(), *g_inputs, train=True, mutable=["batch_stats"])
    if not head:
        return fake, None
    _, found = s.d.apply_fn(s.d.variables(), fake, train=True, capture_intermediates=True)
    return fake, found["intermediates"]["code_head"]["__call__"][0]


def test_the_info_loss_is_the_cross_entropy_of_the_drawn_codes():
    logits = np.random.default_rng(0).normal(size=(6, K)).astype(np.float32)
    codes = np.array([0, 3, 9, 3, 1, 7], np.int32)
    log_q = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_q[np.arange(6), codes])
    np.testing.assert_allclose(losses.info_loss(jnp.asarray(logits), codes), expected, rtol=1e-6)


def test_the_continuous_info_loss_is_a_unit_gaussians_negative_log_likelihood():
    rng = np.random.default_rng(1)
    means, codes = rng.normal(size=(2, 6, 3)).astype(np.float32)
    nll = -stats.norm.logpdf(codes, loc=means).sum(axis=1).mean()
    constant = 3 * 0.5 * np.log(2 * np.pi)  # the part left out
    np.testing.assert_allclose(
        losses.info_continuous_loss(jnp.asarray(means), codes), nll - constant, rtol=1e-6
    )


@pytest.mark.parametrize("codes", [K, 0])  # with the categorical code, and alone
def test_q_predicts_the_continuous_codes_which_are_zs_first_dims(codes):
    c = 3
    config = _config(codes=codes, continuous=c)
    s = families.create_state(config, jax.random.key(0))
    spec = families.get("dcgan").step_spec(config)
    assert spec.info == gan_step.Info(codes, 1.0, c)
    rng, batch = jax.random.key(3), _batch()
    _, metrics = jax.jit(functools.partial(gan_step.d_step, spec=spec))(s, batch, rng)
    # the same number from the networks: Q's head [B, K + C] on G(z, c), its first K outputs the
    # code's logits, the rest the Gaussian's means for z's first C dims
    categorical, _ = gan_step._g_inputs(rng, batch, spec, None)
    assert (categorical is None) == (codes == 0)
    z = np.asarray(gan_step._latents(rng, batch, config.model.latent_dim, None))
    g_inputs = (z,) if categorical is None else (z, categorical)
    _, head = _forward(s, *g_inputs)
    head = np.asarray(head, np.float64)
    assert head.shape == (len(z), codes + c)
    expected = -stats.norm.logpdf(z[:, :c], loc=head[:, codes:]).sum(axis=1).mean()
    expected -= c * 0.5 * np.log(2 * np.pi)
    if codes:
        log_q = head[:, :codes] - np.log(np.exp(head[:, :codes]).sum(axis=1, keepdims=True))
        expected -= np.mean(log_q[np.arange(len(z)), np.asarray(categorical)])
    np.testing.assert_allclose(metrics["d_info"], expected, rtol=1e-5)


def test_continuous_codes_are_some_of_zs_dims_on_an_unconditional_d():
    config = load_config("dcgan_mnist_uncond")
    dims = config.model.latent_dim
    config.model.latent_continuous = dims + 1
    with pytest.raises(ConfigError, match=f"continuous={dims + 1} is invalid: use an integer from"):
        config_lib.validate(config)
    config = load_config("dcgan_mnist")  # conditional: 10 classes
    config.model.latent_continuous = 2
    with pytest.raises(ConfigError, match="model.latent_continuous=2 is invalid: use 0 while"):
        config_lib.validate(config)
    config = load_config("stylegan2_mnist")
    config.model.latent_continuous = 2
    with pytest.raises(ConfigError, match="StyleGAN2's D has no code head"):
        config_lib.validate(config)


def test_the_mode_seeking_term_is_msgans_inverse_distance_ratio_per_pair():
    rng = np.random.default_rng(2)
    images, z = rng.normal(size=(6, 4, 4, 1)), rng.normal(size=(6, 5))
    ratios = [
        np.abs(images[j] - images[j + 1]).mean() / np.abs(z[j] - z[j + 1]).mean()
        for j in range(0, 6, 2)
    ]
    expected = np.mean([1 / (r + 1e-5) for r in ratios])
    got = losses.mode_seeking_loss(jnp.asarray(images, jnp.float32), jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="pairs rows, but a device has 5"):
        losses.mode_seeking_loss(jnp.zeros((5, 2)), jnp.zeros((5, 3)))


def test_g_adds_the_mode_seeking_term_on_pairs_that_share_their_code():
    config = _config()
    config.train.mode_seeking = 0.5
    config = config_lib.validate(config)
    s = families.create_state(config, jax.random.key(0))
    spec = families.get("dcgan").step_spec(config)
    rng, batch = jax.random.key(6), _batch()
    _, metrics = jax.jit(functools.partial(gan_step.g_step, spec=spec))(s, batch, rng)
    codes, _ = gan_step._g_inputs(rng, batch, spec, None)
    codes = np.asarray(codes)
    np.testing.assert_array_equal(codes[0::2], codes[1::2])  # each pair one code
    assert len(set(codes[0::2])) > 1
    z = gan_step._latents(rng, batch, config.model.latent_dim, None)
    fake, _ = _forward(s, z, codes, head=False)
    fake, z = np.asarray(fake, np.float64), np.asarray(z, np.float64)
    distance = lambda x: np.abs(x[0::2] - x[1::2]).reshape(len(x) // 2, -1).mean(axis=1)
    expected = np.mean(1 / (distance(fake) / distance(z) + 1e-5))
    np.testing.assert_allclose(metrics["g_ms"], expected, rtol=1e-5)
    config.train.batch_size = 7
    with pytest.raises(ConfigError, match="use 0 while train.batch_size is odd"):
        config_lib.validate(config)


def test_codes_exclude_classes_and_stylegan2():
    config = load_config("dcgan_mnist")  # conditional: 10 classes
    config.model.latent_codes = K
    with pytest.raises(ConfigError, match="model.latent_codes=10 is invalid: use 0 while"):
        config_lib.validate(config)
    config = load_config("stylegan2_mnist")
    config.model.latent_codes = K
    with pytest.raises(ConfigError, match="StyleGAN2's D has no code head"):
        config_lib.validate(config)


@pytest.fixture(scope="module")
def stepped():
    """One D step at λ = 0 and λ = 2 from the same state, batch and key."""
    config = _config(weight=2.0)
    s = families.create_state(config, jax.random.key(0))
    rng = jax.random.key(3)
    spec = families.get("dcgan").step_spec(config)
    runs = {}
    for weight in (0.0, 2.0):
        info = gan_step.Info(K, weight)
        step = functools.partial(gan_step.d_step, spec=dataclasses.replace(spec, info=info))
        runs[weight] = jax.jit(step)(s, _batch(), rng)
    return config, s, rng, spec, runs


def test_d_adds_lambda_times_the_info_loss_of_q_on_gs_coded_samples(stepped):
    config, s, rng, spec, runs = stepped
    (_, plain), (new, weighted) = runs[0.0], runs[2.0]
    np.testing.assert_allclose(weighted["d_info"], plain["d_info"], rtol=1e-6)
    np.testing.assert_allclose(
        weighted["d_loss"], plain["d_loss"] + 2.0 * plain["d_info"], rtol=1e-5
    )
    # the same number from the networks directly: G(z, c) for the step's z and codes, Q's logits
    # on them, the cross-entropy written out
    batch = _batch()
    codes, d_labels = gan_step._g_inputs(rng, batch, spec, None)
    assert d_labels is None and codes.dtype == jnp.int32 and set(np.asarray(codes)) <= set(range(K))
    z = gan_step._latents(rng, batch, config.model.latent_dim, None)
    _, head = _forward(s, z, codes)
    head = np.asarray(head)
    log_q = head - np.log(np.exp(head).sum(axis=1, keepdims=True))
    expected = -np.mean(log_q[np.arange(len(codes)), np.asarray(codes)])
    np.testing.assert_allclose(plain["d_info"], expected, rtol=1e-5)
    # Q trains with D; at λ = 0 its head gets no gradient
    head_of = lambda state: np.asarray(state.d.params["code_head"]["kernel"])
    assert not np.array_equal(head_of(new), head_of(s))
    np.testing.assert_array_equal(head_of(runs[0.0][0]), head_of(s))


def test_g_learns_through_q_and_samples_its_codes_in_order():
    config = _config()
    s = families.create_state(config, jax.random.key(0))
    step = jax.jit(families.make_train_step(config))
    new, metrics = step(s, _batch(), jax.random.key(4))
    assert np.isfinite(float(metrics["g_info"])) and float(metrics["g_info"]) > 0
    config.train.info_weight = 0.0
    without, _ = jax.jit(families.make_train_step(config))(s, _batch(), jax.random.key(4))
    g_params = lambda state: jax.tree.leaves(state.g.params)
    assert any(not np.array_equal(a, b) for a, b in zip(g_params(new), g_params(without)))
    z = jax.random.normal(jax.random.key(2), (4, config.model.latent_dim))

    # one program, not every layer's ops one by one; the second's codes are made in it as G's
    # own default makes them (`fixed_labels`), so the two compute the same ops when (and only
    # when) G without codes draws them in order
    @jax.jit
    def images(variables, z):
        g = lambda *codes: new.g.apply_fn(variables, z, *codes, train=False)
        return g(), g(fixed_labels(4, K))

    uncoded, in_order = images(new.g.variables(), z)
    np.testing.assert_array_equal(uncoded, in_order)  # grids: codes 0, 1, 2, ...


@pytest.mark.parametrize("mbstd_group", [0, 2])  # D's minibatch std: groups within a device
def test_a_pmap_step_with_codes_equals_the_jit_step(mbstd_group):
    n, b = 4, 8
    if len(jax.local_devices()) < n:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    config = _config(continuous=2)  # both kinds of code, and MSGAN's pairs within each device
    config.model.mbstd_group = mbstd_group
    config.train.mode_seeking = 1.0
    s = families.create_state(config, jax.random.key(0))
    rng, batch = jax.random.key(5), _batch(b)
    single, m1 = jax.jit(families.make_train_step(config))(s, batch, rng)
    config.parallel.strategy = "pmap"  # G's BatchNorm takes statistics over all devices
    s_pmap = families.create_state(config, jax.random.key(0))
    multi, m2 = jax.pmap(
        families.make_train_step(config, "data"),
        axis_name="data",
        in_axes=(None, 0, None),
        out_axes=(None, None),
        devices=jax.local_devices()[:n],
    )(s_pmap, jax.tree.map(lambda x: x.reshape(n, b // n, *x.shape[1:]), batch), rng)
    for key in ("d_info", "g_info", "g_ms", "d_loss", "g_loss"):
        np.testing.assert_allclose(m2[key], m1[key], rtol=1e-4, err_msg=key)
    params = lambda state: jax.tree.leaves((state.g.params, state.d.params))
    for a, c in zip(params(multi), params(single), strict=True):
        assert np.linalg.norm(a - c) <= 1e-4 * max(np.linalg.norm(c), 1e-6)
