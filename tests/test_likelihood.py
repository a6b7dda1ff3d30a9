"""The likelihood a VAE is scored with is the one its `train.reconstruction` trains: the
Bernoulli (unchanged), or for "mse" the discretised Gaussian N(sigmoid(logits), σ²I) on the
data's pixel levels, checked against scipy.stats.norm in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import load_config

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core import losses
from genimg_jax.core.errors import ConfigError
from genimg_jax.data import pipeline
from genimg_jax.families.vae import scoring
from genimg_jax.families.vae import step as vae_step
from genimg_jax.metrics import likelihood

MSE = likelihood.PixelLikelihood("mse")  # σ = √½, 256 levels
# compiled once per number of levels (σ traced), as the training step and the scorer run it,
# instead of log_ndtr's dozens of ops eagerly one by one
_discretized_nll = jax.jit(losses.discretized_gaussian_nll, static_argnames="levels")


def _reference_nll(x: np.ndarray, mean: np.ndarray, sigma: float, levels: int = 256) -> np.ndarray:
    """−Σ log P(bin of x) per example, float64: the bin's N(mean, σ²) mass by scipy, the bins
    of 0 and 1 open-ended; each bin's mass taken on the side away from the Gaussian's centre."""
    top = levels - 1
    k = np.round(x * top)
    a = np.where(k > 0, (k / top - 0.5 / top - mean) / sigma, -np.inf)
    b = np.where(k < top, (k / top + 0.5 / top - mean) / sigma, np.inf)
    below = scipy.stats.norm.cdf(b) - scipy.stats.norm.cdf(a)
    above = scipy.stats.norm.sf(a) - scipy.stats.norm.sf(b)
    p = np.where(k / top > mean, above, below)
    return -np.log(p).reshape(len(x), -1).sum(axis=1)


@pytest.mark.parametrize(
    ("sigma", "levels"), [(np.sqrt(0.5), 256), (0.2, 256), (0.05, 256), (0.3, 2)]
)
def test_discretized_gaussian_nll_matches_scipy(sigma, levels):
    rng = np.random.default_rng(0)
    x = rng.integers(0, levels, (3, 8, 8, 2)) / (levels - 1)
    x[0, :2] = 0.0
    x[1, :2] = 1.0  # the open-ended bins
    mean = scipy.special.expit(rng.normal(0.0, 3.0, x.shape))  # far tails included
    got = _discretized_nll(
        jnp.asarray(x, jnp.float32), jnp.asarray(mean, jnp.float32), sigma, levels=levels
    )
    np.testing.assert_allclose(got, _reference_nll(x, mean, sigma, levels), rtol=2e-5)


@pytest.mark.parametrize("levels", [2, 256])
def test_discretized_gaussian_is_a_probability_over_the_levels(levels):
    values = jnp.arange(levels, dtype=jnp.float32).reshape(levels, 1, 1, 1) / (levels - 1)
    for mean in (0.0, 0.3, 0.97):
        nll = _discretized_nll(values, np.full(values.shape, mean, np.float32), 0.1, levels=levels)
        assert float(jnp.sum(jnp.exp(-nll))) == pytest.approx(1.0, abs=1e-5)


def test_mse_loss_is_the_gaussian_nll_up_to_a_constant():
    """Σ(x − μ)² = −log N(x; μ, ½I) − D/2·log π, and on interior levels the discretised
    likelihood is the density times the bin width 1/255 (to the midpoint rule's accuracy)."""
    rng = np.random.default_rng(1)
    x = rng.integers(1, 255, (4, 6, 6, 1)) / 255.0
    logits = rng.normal(0.0, 2.0, x.shape)
    mean, d = scipy.special.expit(logits), x[0].size
    mse = np.asarray(jax.jit(losses.mse_reconstruction)(jnp.asarray(x), jnp.asarray(logits)))
    density = -scipy.stats.norm(mean, losses.MSE_SIGMA).logpdf(x).reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(mse, density - d / 2 * np.log(np.pi), rtol=1e-5)
    nll = jax.jit(MSE.nll)(jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(nll, density + d * np.log(255.0), rtol=1e-5)


@pytest.fixture(scope="module")
def vae_and_images(data_dir):
    """A random-parameter quick VAE whose decoder is 10x more sensitive to z, and 4 test digits
    (8-bit levels in [0, 1])."""
    state = families.create_state(load_config("vae_mnist"), jax.random.key(0))
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (
            v * 10.0 if jax.tree_util.keystr(path).startswith("['decoder']['Dense_0']") else v
        ),
        state.params,
    )
    images = pipeline.load_split("bundled_mnist", "test", data_dir).get(np.arange(4))["image"]
    return state.replace(params=params), jnp.asarray(images / 255.0, jnp.float32)


_APPLIED: dict[int, tuple] = {}  # id(state) -> (state, its compiled apply), kept alive


def _compiled_apply(state):
    """state's networks compiled (not every layer's ops one by one), once per state: each
    parametrisation's reference then reuses the encoder and decoder programs."""
    if id(state) not in _APPLIED:
        apply = jax.jit(
            lambda x, method: state.apply_fn({"params": state.params}, x, method=method),
            static_argnames="method",
        )
        _APPLIED[id(state)] = (state, apply)
    return _APPLIED[id(state)][1]


def _reference_bounds(state, x, rng, k: int, pixels: likelihood.PixelLikelihood):
    """The log weights log p(x|z_i) + log p(z_i) − log q(z_i|x) [k, B] and the analytic-KL
    negative ELBO −log p(x|z_0) + KL [B], float64, with the estimators' noise eps_i from
    fold_in(rng, i): the networks run in JAX, the densities in NumPy/scipy."""
    apply = _compiled_apply(state)
    mean, logvar = apply(x, method="encode")
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    std, xs = np.exp(0.5 * logvar), np.asarray(x, np.float64)
    log_w, nlls = [], []
    for i in range(k):
        eps = np.asarray(jax.random.normal(jax.random.fold_in(rng, i), mean.shape), np.float64)
        z = mean + std * eps
        logits = apply(jnp.asarray(z, jnp.float32), method="decode")
        p = scipy.special.expit(np.asarray(logits, np.float64))
        if pixels.reconstruction == "bernoulli":
            nll = -np.sum(xs * np.log(p) + (1 - xs) * np.log1p(-p), axis=(1, 2, 3))
        else:
            nll = _reference_nll(xs, p, pixels.sigma, pixels.levels)
        log_prior = scipy.stats.norm.logpdf(z).sum(axis=1)
        log_q = scipy.stats.norm.logpdf(z, mean, std).sum(axis=1)
        log_w.append(-nll + log_prior - log_q)
        nlls.append(nll)
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, axis=1)
    return np.stack(log_w), nlls[0] + kl


def _check_bounds(state, x, pixels, rtol):
    rng, k = jax.random.key(7), 12
    log_w, reference_elbo = _reference_bounds(state, x, rng, k, pixels)
    elbo = np.asarray(likelihood.negative_elbo(state, x, rng, pixels=pixels))
    np.testing.assert_allclose(elbo, reference_elbo, rtol=rtol)
    one_sample = np.asarray(likelihood.negative_elbo(state, x, rng, False, pixels))
    np.testing.assert_allclose(one_sample, -log_w[0], rtol=rtol)
    iwae = np.asarray(likelihood.iwae_bound(state, x, rng, k, chunk=5, pixels=pixels))
    reference_iwae = -(scipy.special.logsumexp(log_w, axis=0) - np.log(k))
    np.testing.assert_allclose(iwae, reference_iwae, rtol=rtol)
    return elbo, iwae


@pytest.mark.parametrize(
    "pixels",
    [MSE, likelihood.PixelLikelihood("mse", 0.1), likelihood.PixelLikelihood("mse", 0.3, 2)],
)
def test_mse_models_bounds_equal_the_scipy_closed_form(vae_and_images, pixels):
    state, x = vae_and_images
    if pixels.levels == 2:
        x = jnp.round(x)  # binarised digits
    elbo, _ = _check_bounds(state, x, pixels, rtol=1e-5)
    bernoulli = np.asarray(likelihood.negative_elbo(state, x, jax.random.key(7)))
    assert np.all(np.abs(elbo - bernoulli) > 1.0)  # not the Bernoulli's numbers


def test_bernoulli_models_bounds_are_unchanged(vae_and_images):
    """The default is the Bernoulli, whose −log p(x|z) is the training loss's term itself (the
    same program), and whose bounds equal the closed form."""
    state, x = vae_and_images
    assert likelihood.BERNOULLI == likelihood.PixelLikelihood("bernoulli")
    same = jax.make_jaxpr(likelihood.BERNOULLI.nll)(x, x).pretty_print()
    assert same == jax.make_jaxpr(losses.bernoulli_reconstruction)(x, x).pretty_print()
    elbo, iwae = _check_bounds(state, x, likelihood.BERNOULLI, rtol=1e-5)
    rng = jax.random.key(7)
    np.testing.assert_array_equal(elbo, likelihood.negative_elbo(state, x, rng))
    np.testing.assert_array_equal(iwae, likelihood.iwae_bound(state, x, rng, 12, 5))


def _vae_config(reconstruction: str, **train):
    config = load_config("vae_mnist")
    config.train.reconstruction = reconstruction
    for name, value in train.items():
        config.train[name] = value
    return config


def test_the_config_chooses_the_scored_likelihood():
    assert scoring.pixel_likelihood(_vae_config("bernoulli")) == likelihood.BERNOULLI
    config = _vae_config("mse")
    assert config.train.mse_sigma == pytest.approx(np.sqrt(0.5))
    assert scoring.pixel_likelihood(config) == likelihood.PixelLikelihood("mse", np.sqrt(0.5), 256)
    config = _vae_config("mse", mse_sigma=0.1)
    config.data.binarize = True
    assert scoring.pixel_likelihood(config) == likelihood.PixelLikelihood("mse", 0.1, 2)
    with pytest.raises(ConfigError, match="train.mse_sigma"):
        config_lib.validate(_vae_config("mse", mse_sigma=0.0))


def test_the_scorer_and_the_step_report_the_mse_models_likelihood(vae_and_images, data_dir):
    state, _ = vae_and_images
    config = _vae_config("mse", mse_sigma=0.4)
    config.eval.examples, config.eval.iwae_k = 4, 3
    fam = families.of(config)
    scores = fam.make_scorer(config)(state)
    assert set(fam.score_modes(config.data)) <= set(scores)
    assert config.eval.best_metric in scores
    images = pipeline.load_split("bundled_mnist", "test", data_dir).get(np.arange(4))["image"]
    x = np.asarray(images / 255.0, np.float32)
    pixels = likelihood.PixelLikelihood("mse", 0.4)
    elbo, iwae = scoring.likelihood_bounds(
        state, x, jax.random.PRNGKey(config.seed), 3, pixels=pixels
    )
    assert scores["neg_elbo"] == pytest.approx(float(elbo.mean()), rel=1e-6)
    assert scores["iwae"] == pytest.approx(float(iwae.mean()), rel=1e-6)
    assert scores["iwae_bits_per_dim"] == pytest.approx(
        float(iwae.mean()) / (784 * np.log(2)), rel=1e-6
    )

    # the training step: loss from Σ(x − μ)², recon and neg_elbo in nats of the same likelihood
    spec = fam.step_spec(config)
    assert spec.reconstruction is losses.mse_reconstruction
    rng = jax.random.key(5)
    _, metrics = jax.jit(lambda s, b, r: vae_step.vae_step(s, b, r, spec))(state, {"image": x}, rng)
    eps = jax.random.normal(rng, (4, config.model.latent_dim))
    apply = jax.jit(lambda x, eps: state.apply_fn({"params": state.params}, x, eps))  # not eager
    logits, _, _ = apply(jnp.asarray(x), eps)
    p = scipy.special.expit(np.asarray(logits, np.float64))
    nll = _reference_nll(x.astype(np.float64), p, 0.4).mean()
    squared = np.sum((x - p) ** 2, axis=(1, 2, 3)).mean()
    np.testing.assert_allclose(metrics["recon"], nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["recon_loss"], squared, rtol=1e-5)
    np.testing.assert_allclose(metrics["neg_elbo"], metrics["recon"] + metrics["kl"], rtol=1e-6)
    loss = squared + config.model.beta * metrics["kl"]
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
