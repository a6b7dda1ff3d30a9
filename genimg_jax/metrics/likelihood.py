"""Likelihood bounds of a VAE: the negative ELBO and the importance-weighted bound of Burda et
al. 2016 (IWAE), in nats per example, and bits per dimension, under the decoder distribution
p(x|z) that the model was trained with (`PixelLikelihood`):

- `train.reconstruction="bernoulli"`: independent Bernoulli pixels with the decoder's logits,
  −log p(x|z) = the training loss's reconstruction term (`losses.bernoulli_reconstruction`,
  as before). On binarised data that is a discrete likelihood; on grey values in [0, 1] it is
  the cross-entropy, which is not a normalised likelihood of them, so those numbers compare
  only with other Bernoulli scores.
- `train.reconstruction="mse"`: the Gaussian that the loss Σ(x − μ)² implies,
  p(x|z) = N(μ(z), σ²I) with μ = sigmoid(logits) (what the loss compares x to) and σ =
  `train.mse_sigma`; its default √½ makes the loss −log N(x; μ, σ²I) − D/2·log π exactly
  (`losses.MSE_SIGMA`). It is scored as the discrete likelihood of the data's pixel levels
  (`losses.discretized_gaussian_nll`): each of the 256 levels k/255 of 8-bit data (the 2
  levels of binarised data) gets the Gaussian's mass on its bin of width w = 1/255 (w = 1),
  the end bins reaching to ±∞:

      P(x|z) = Π_pixels Φ((x + w/2 − μ)/σ) − Φ((x − w/2 − μ)/σ)

  (binarised: P(x = 1) = Φ((μ − ½)/σ), a probit Bernoulli).

  This is a proper probability of the quantised data (−log P >= 0), so its bits/dim compare
  with those of any discrete model of the same levels, the Bernoulli on binarised data
  included. It is what uniform dequantisation estimates: for u uniform on the bin,
  E_u[log(w·p(x + u))] <= log P(x) (Theis et al. 2016), and where σ is much wider than a bin
  P ≈ w·p(x), i.e. the continuous density with the usual log(255) per dimension; unlike that
  approximation it stays a bound for any σ and at the end levels, where pixels pile up.

Sample i of either estimator uses the noise eps_i = N(0, I) drawn from fold_in(rng, i), so the
bound does not depend on how the k samples are chunked, and with one sample it uses the noise
of `negative_elbo(..., analytic_kl=False)` with the same rng.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from genimg_jax.core import losses

Array = jax.Array
LOG_2PI = math.log(2.0 * math.pi)
DEFAULT_CHUNK = 256  # importance samples decoded at once: memory ~ chunk·B·H·W·C floats
PIXEL_LIKELIHOODS = ("bernoulli", "mse")  # the decoder distributions, by train.reconstruction


@dataclasses.dataclass(frozen=True)
class PixelLikelihood:
    """The decoder distribution p(x|z) of a VAE trained with `train.reconstruction` (module
    doc): "bernoulli", or "mse" with standard deviation `sigma` on `levels` pixel levels of
    [0, 1] (256 for 8-bit data, 2 for binarised data). Hashable: a static argument of the
    bounds."""

    reconstruction: str = "bernoulli"
    sigma: float = losses.MSE_SIGMA
    levels: int = 256

    def __post_init__(self):
        if self.reconstruction not in PIXEL_LIKELIHOODS:
            raise ValueError(f"reconstruction={self.reconstruction!r}: use {PIXEL_LIKELIHOODS}")
        if not (self.sigma > 0 and math.isfinite(self.sigma)) or self.levels < 2:
            raise ValueError(f"sigma={self.sigma} must be > 0 and levels={self.levels} >= 2")

    def nll(self, x: Array, logits: Array) -> Array:
        """−log p(x|z) per example in nats from the decoder's logits: [B, H, W, C] -> [B]."""
        if self.reconstruction == "bernoulli":
            return losses.bernoulli_reconstruction(x, logits)
        mean = jax.nn.sigmoid(logits)
        return losses.discretized_gaussian_nll(x, mean, self.sigma, self.levels)


BERNOULLI = PixelLikelihood()


def log_normal_diag(x: Array, mean: Array, logvar: Array) -> Array:
    """log N(x; mean, diag(exp(logvar))), summed over the last axis: [..., Z] -> [...]."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar), axis=-1)


def log_standard_normal(x: Array) -> Array:
    """log N(x; 0, I), summed over the last axis: [..., Z] -> [...]."""
    return -0.5 * jnp.sum(LOG_2PI + jnp.square(x), axis=-1)


def _encode(state, x: Array) -> tuple[Array, Array]:
    return state.apply_fn({"params": state.params}, x, method="encode")


def _decode(state, z: Array) -> Array:
    return state.apply_fn({"params": state.params}, z, method="decode")


def _noise(rng: Array, indices: Array, shape: tuple[int, ...]) -> Array:
    """eps for the samples `indices` [n]: [n, *shape], sample i drawn from fold_in(rng, i)."""
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), shape))(indices)


def _log_weights(
    state, x: Array, mean: Array, logvar: Array, eps: Array, pixels: PixelLikelihood
) -> Array:
    """log p(x|z) + log p(z) - log q(z|x) for z = mean + exp(logvar/2)·eps, p(x|z) `pixels`.

    x: [B, H, W, C]; mean, logvar: [B, Z]; eps: [n, B, Z] -> [n, B].
    """
    n, b, zdim = eps.shape
    z = mean + jnp.exp(0.5 * logvar) * eps  # [n, B, Z]
    logits = _decode(state, z.reshape(n * b, zdim))  # [n·B, H, W, C]
    x_rep = jnp.broadcast_to(x, (n, *x.shape)).reshape(n * b, *x.shape[1:])
    log_px_z = -pixels.nll(x_rep, logits).reshape(n, b)
    return log_px_z + log_standard_normal(z) - log_normal_diag(z, mean, logvar)


@functools.partial(jax.jit, static_argnames=("analytic_kl", "pixels"))
def negative_elbo(
    state, x: Array, rng: Array, analytic_kl: bool = True, pixels: PixelLikelihood = BERNOULLI
) -> Array:
    """-ELBO = -log p(x|z) + KL(q(z|x) || p(z)) per example in nats, one z ~ q(z|x): [B].

    x: images [B, H, W, C] in [0, 1]; p(x|z): `pixels` (module doc). With analytic_kl the KL
    term is the closed form; otherwise it is the one-sample estimate log q(z|x) - log p(z)
    (then equal to `iwae_bound(state, x, rng, k=1)`).
    """
    mean, logvar = _encode(state, x)
    eps = _noise(rng, jnp.arange(1), mean.shape)  # [1, B, Z]
    if not analytic_kl:
        return -_log_weights(state, x, mean, logvar, eps, pixels)[0]
    z = mean + jnp.exp(0.5 * logvar) * eps[0]
    return pixels.nll(x, _decode(state, z)) + losses.gaussian_kl(mean, logvar)


@functools.partial(jax.jit, static_argnames=("k", "pixels"))
def log_importance_weights(
    state, x: Array, rng: Array, k: int, pixels: PixelLikelihood = BERNOULLI
) -> Array:
    """The k log importance weights log p(x, z_i) - log q(z_i|x) per example: [k, B] (all at
    once; for large k use `iwae_bound`, which bounds memory)."""
    mean, logvar = _encode(state, x)
    return _log_weights(state, x, mean, logvar, _noise(rng, jnp.arange(k), mean.shape), pixels)


@functools.partial(jax.jit, static_argnames=("k", "chunk", "pixels"))
def iwae_bound(
    state,
    x: Array,
    rng: Array,
    k: int,
    chunk: int = DEFAULT_CHUNK,
    pixels: PixelLikelihood = BERNOULLI,
) -> Array:
    """-log (1/k Σ_i p(x|z_i) p(z_i) / q(z_i|x)), z_i ~ q(z|x), per example in nats: [B],
    p(x|z) `pixels` (module doc).

    An upper bound on -log p(x) that tightens as k grows (k = 1: the negative ELBO). The k
    samples are decoded `chunk` at a time with a running logsumexp, so memory stays bounded.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k={k} and chunk={chunk} must be >= 1")
    chunk = min(chunk, k)
    mean, logvar = _encode(state, x)

    def body(running: Array, start: Array) -> tuple[Array, None]:
        indices = start + jnp.arange(chunk)  # [chunk]
        log_w = _log_weights(state, x, mean, logvar, _noise(rng, indices, mean.shape), pixels)
        log_w = jnp.where((indices < k)[:, None], log_w, -jnp.inf)  # the last chunk's padding
        return jnp.logaddexp(running, jax.nn.logsumexp(log_w, axis=0)), None

    starts = jnp.arange(0, k, chunk)  # ceil(k / chunk) chunks, none fully padded
    init = jnp.full(x.shape[:1], -jnp.inf, jnp.float32)
    log_sum, _ = jax.lax.scan(body, init, starts)
    return -(log_sum - math.log(k))


def bits_per_dim(nats: Array, num_dims: int) -> Array:
    """Nats per example [B] -> bits per dimension [B] (num_dims = H·W·C)."""
    return jnp.asarray(nats) / (num_dims * math.log(2.0))
