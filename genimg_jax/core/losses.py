"""GAN losses, gradient penalties and VAE ELBO terms: pure jnp functions of logits (or critic
values) and distribution parameters."""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import collectives

Array = jax.Array


# --------------------------------------------------------------------------------------------
# GAN losses, each a function of D's raw outputs l (logits; critic values for the Wasserstein
# loss). For the non-saturating loss D(x) = sigmoid(l): using -log sigmoid(l) = softplus(-l) and
# -log(1 - sigmoid(l)) = softplus(l) keeps every term finite for any logit. The others use l as
# it is.


def non_saturating_d_loss(real_logits: Array, fake_logits: Array) -> Array:
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))], from logits."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits: Array) -> Array:
    """L_G = -E[log D(G(z))] (the non-saturating generator loss), from logits."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def hinge_d_loss(real_logits: Array, fake_logits: Array) -> Array:
    """L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; SN-GAN), D(.) raw."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits: Array) -> Array:
    """L_G = -E[D(G(z))], D(.) raw (the hinge and Wasserstein generator loss)."""
    return -jnp.mean(fake_logits)


def wasserstein_d_loss(real_logits: Array, fake_logits: Array) -> Array:
    """L_D = E[D(G(z))] - E[D(x)]: the critic's estimate of -W(p_data, p_G) (Arjovsky et al.
    2017); needs a Lipschitz constraint (gradient penalty, spectral norm)."""
    return jnp.mean(fake_logits) - jnp.mean(real_logits)


def least_squares_d_loss(real_logits: Array, fake_logits: Array) -> Array:
    """LSGAN (Mao et al. 2017), a=0, b=1: L_D = ½E[(D(x) - 1)²] + ½E[D(G(z))²], D(.) raw."""
    return 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def least_squares_g_loss(fake_logits: Array) -> Array:
    """LSGAN, c=1: L_G = ½E[(D(G(z)) - 1)²], D(.) raw."""
    return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))


class GANLoss(NamedTuple):
    """A discriminator loss and the generator loss that goes with it."""

    d_loss: Callable[[Array, Array], Array]  # (real_logits, fake_logits) -> scalar
    g_loss: Callable[[Array], Array]  # fake_logits -> scalar


GAN_LOSSES: dict[str, GANLoss] = {
    "non_saturating": GANLoss(non_saturating_d_loss, non_saturating_g_loss),
    "hinge": GANLoss(hinge_d_loss, hinge_g_loss),
    "wasserstein": GANLoss(wasserstein_d_loss, hinge_g_loss),
    "least_squares": GANLoss(least_squares_d_loss, least_squares_g_loss),
}


# --------------------------------------------------------------------------------------------
# Gradient penalties on D. `d_fn` maps images [B, H, W, C] to one value per example [B], with
# examples independent of each other (no batch statistics in D), so the gradient of
# sum(d_fn(x)) with respect to x holds every example's gradient ∇_x D(x_i) in its rows.


def _input_gradients(d_fn: Callable[[Array], Array], x: Array) -> Array:
    """∇_x D(x_i) for each example, flattened: [B, H·W·C] (float32)."""
    grads = jax.grad(lambda v: jnp.sum(d_fn(v).astype(jnp.float32)))(x)
    return grads.reshape(x.shape[0], -1).astype(jnp.float32)


def r1_penalty(d_fn: Callable[[Array], Array], real: Array) -> Array:
    """R1 (Mescheder et al. 2018): E[||∇_x D(x)||²] on real images; the D loss adds γ/2 times
    it (`train.r1_gamma`)."""
    return jnp.mean(jnp.sum(jnp.square(_input_gradients(d_fn, real)), axis=-1))


def interpolation_weights(rng: jax.Array, rows: int, axis_name: str | None = None) -> Array:
    """ε ~ U[0, 1] per example, [rows], from one draw for the global batch."""
    draw = lambda k, n: jax.random.uniform(k, (n,))
    return collectives.global_rows(draw, rng, rows, axis_name)


def interpolate(real: Array, fake: Array, eps: Array) -> Array:
    """x̂ = ε·x + (1 - ε)·x̃ per example: eps [B] broadcast over [B, H, W, C]."""
    eps = eps.reshape((-1,) + (1,) * (real.ndim - 1)).astype(real.dtype)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty_at(d_fn: Callable[[Array], Array], x_hat: Array) -> Array:
    """E[(||∇ D(x̂)|| - 1)²] at the given points. The norm carries a 1e-12 inside the square
    root so its gradient stays finite where ∇ D = 0."""
    norms = jnp.sqrt(jnp.sum(jnp.square(_input_gradients(d_fn, x_hat)), axis=-1) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def gradient_penalty(
    d_fn: Callable[[Array], Array],
    real: Array,
    fake: Array,
    rng: jax.Array,
    axis_name: str | None = None,
) -> Array:
    """WGAN-GP (Gulrajani et al. 2017): E[(||∇ D(x̂)|| - 1)²] on x̂ = ε·x + (1 - ε)·G(z), ε ~
    U[0, 1] per example (one global draw, sliced per device under pmap); the D loss adds
    `train.gp_weight` times it."""
    eps = interpolation_weights(rng, real.shape[0], axis_name)
    return gradient_penalty_at(d_fn, interpolate(real, fake, eps))


def path_lengths(synthesis: Callable[[Array], Array], ws: Array, noise: Array) -> Array:
    """StyleGAN2's path lengths ||J_wᵀ y|| per example [B]: J the Jacobian of the images
    synthesis(ws) [B, H, W, C] with respect to ws [B, L, D], y = noise / √(H·W) (noise ~ N(0, I)
    of the images' shape); the norm is taken over D and averaged in square over the L layers'
    ws, as the official code does."""
    scale = 1.0 / math.sqrt(noise.shape[1] * noise.shape[2])
    grads = jax.grad(lambda v: jnp.sum(synthesis(v).astype(jnp.float32) * noise * scale))(ws)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=2), axis=1))


def path_length_penalty(lengths: Array, target: Array) -> Array:
    """E[(||J_wᵀ y|| − a)²] (Karras et al. 2020), a the running mean of the path lengths."""
    return jnp.mean(jnp.square(lengths - target))


def lecam_penalty(
    real_logits: Array, fake_logits: Array, real_anchor: Array, fake_anchor: Array
) -> Array:
    """LeCam (Tseng et al. 2021, their code): E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²],
    α_R and α_F the EMAs of D's mean outputs on real and fake images (`lecam_anchors`)."""
    return jnp.mean(jnp.square(jax.nn.relu(real_logits - fake_anchor))) + jnp.mean(
        jnp.square(jax.nn.relu(real_anchor - fake_logits))
    )


def info_loss(code_logits: Array, codes: Array) -> Array:
    """InfoGAN's (Chen et al. 2016) bound on I(c; G(z, c)) for a categorical code, as a loss:
    E[-log Q(c | G(z, c))], Q's logits [B, K] and the codes c drawn, int32 [B] (the code's
    entropy, a constant, left out)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(code_logits, codes))


def info_continuous_loss(means: Array, codes: Array) -> Array:
    """InfoGAN's bound for continuous codes, as a loss: E[-log Q(c | G(z, c))] for Q a Gaussian
    of unit variance around its means [B, C], the codes drawn [B, C]: E[Σ_j ½(c_j − μ_j)²]
    (constants left out; InfoGAN's `fix_std` form)."""
    return jnp.mean(jnp.sum(0.5 * jnp.square(codes - means), axis=-1))


def mode_seeking_loss(images: Array, z: Array, eps: float = 1e-5) -> Array:
    """MSGAN's (Mao et al. 2019) mode-seeking term over pairs of rows (2j, 2j+1) that share their
    condition: E_j[1 / (r_j + eps)], r_j = mean|G(z_2j) − G(z_2j+1)| / mean|z_2j − z_2j+1|, so G
    spreads its images as far apart as their latents are. Per pair (the paper's Eq. 3; its code
    divides batch means), so the term is a mean over rows and pmap equals jit. images [B, ...],
    z [B, Z], B even."""
    if images.shape[0] % 2:
        raise ValueError(f"the mode-seeking term pairs rows, but a device has {images.shape[0]}")
    distance = lambda x: jnp.mean(jnp.abs(x[0::2] - x[1::2]).reshape(x.shape[0] // 2, -1), -1)
    return jnp.mean(1.0 / (distance(images) / distance(z) + eps))


def lecam_anchors(anchors, real_mean: Array, fake_mean: Array, decay: float) -> dict:
    """`anchors` ({"lecam_real", "lecam_fake", ...}) moved towards this step's mean outputs:
    α ← decay·α + (1 − decay)·mean."""
    return {
        **anchors,
        "lecam_real": decay * anchors["lecam_real"] + (1.0 - decay) * real_mean,
        "lecam_fake": decay * anchors["lecam_fake"] + (1.0 - decay) * fake_mean,
    }


# --------------------------------------------------------------------------------------------
# VAE terms. Per-example values are summed over pixels / latent dimensions, then averaged over
# the batch, so that the loss is the negative ELBO per example (in nats).


def gaussian_kl(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over latent dims: [B, Z] -> [B]."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


# The Gaussian decoder that `mse_reconstruction` implies. The loss is Σ_pixels (x − μ)², summed
# (not averaged) over the D = H·W·C pixels, with μ = sigmoid(logits). Under p(x|z) = N(x; μ, σ²I),
# −log p(x|z) = Σ (x − μ)² / (2σ²) + D/2·log(2πσ²), so with σ² = 1/2 the loss is exactly
# −log p(x|z) − D/2·log π: L = MSE + β·KL is then the negative β-ELBO of that decoder up to a
# constant. With another σ the same loss is 2σ² times the negative ELBO of weight β/(2σ²).
MSE_SIGMA = math.sqrt(0.5)


def mse_reconstruction(x: Array, logits: Array) -> Array:
    """||x - x̂||² per example with x̂ = sigmoid(logits): [B, H, W, C] -> [B]. Summed over
    pixels: −log N(x; x̂, ½I) up to the constant D/2·log π (`MSE_SIGMA`)."""
    x_hat = jax.nn.sigmoid(logits)
    return jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=-1)


def _log1mexp(a: Array) -> Array:
    """log(1 − exp(a)) for a <= 0, accurate at both ends (Mächler 2012)."""
    return jnp.where(a > -math.log(2.0), jnp.log(-jnp.expm1(a)), jnp.log1p(-jnp.exp(a)))


def discretized_gaussian_nll(x: Array, mean: Array, sigma: float, levels: int = 256) -> Array:
    """−log P(x | μ) per example of pixels on `levels` evenly spaced values k/(levels − 1) of
    [0, 1], each with the mass that N(μ, σ²) puts on its bin: [B, H, W, C] -> [B] nats.

        P(x) = Φ((x + h − μ)/σ) − Φ((x − h − μ)/σ),   h = 1 / (2·(levels − 1)),

    the bins of 0 and 1 reaching to −∞ and +∞, so the probabilities of the `levels` values
    sum to 1 (the discretised likelihood of PixelCNN++ and of Ho et al. 2020's decoder). x is
    rounded to its level. Computed as log Φ(b) + log(1 − Φ(a)/Φ(b)) on the side of the bin
    nearer the Gaussian's tail (Φ(b) − Φ(a) = Φ(−a) − Φ(−b)), so bins far out in either tail
    and bins much narrower than σ keep their precision in float32.
    """
    if levels < 2:
        raise ValueError(f"levels={levels} must be >= 2")
    top = levels - 1
    k = jnp.round(x * top)
    centre = (k / top - mean) / sigma
    half = 0.5 / (top * sigma)
    lo = jnp.where(k > 0, centre - half, -jnp.inf)
    hi = jnp.where(k < top, centre + half, jnp.inf)
    flip = centre > 0
    lo, hi = jnp.where(flip, -hi, lo), jnp.where(flip, -lo, hi)
    log_hi = jax.scipy.special.log_ndtr(hi)
    log_p = log_hi + _log1mexp(jax.scipy.special.log_ndtr(lo) - log_hi)
    return -jnp.sum(log_p.reshape(x.shape[0], -1), axis=-1)


def bernoulli_reconstruction(x: Array, logits: Array) -> Array:
    """-log p(x | z) under independent Bernoulli pixels with the given logits: -> [B]."""
    nll = optax.sigmoid_binary_cross_entropy(logits, x)
    return jnp.sum(nll.reshape(x.shape[0], -1), axis=-1)


RECONSTRUCTION_LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "mse": mse_reconstruction,
    "bernoulli": bernoulli_reconstruction,
}


def vae_loss(recon: Array, kl: Array, beta: Array | float) -> Array:
    """L = E[L_recon] + β·E[KL] over the batch, from per-example terms [B]."""
    return jnp.mean(recon) + beta * jnp.mean(kl)


# --------------------------------------------------------------------------------------------
# The regularisers of β-VAE's relatives (Locatello et al. 2019's study; `model.objective`). Each
# is a function of the batch's posterior parameters (mean, logvar [B, Z]) and samples z [B, Z],
# whole-batch statistics included, so under pmap the step gathers them first (steps.vae).


def linear_ramp(step: Array, steps: Array) -> Array:
    """min(1, step / steps), and 1 when steps <= 0: a linear warm-up from 0 to 1."""
    step, steps = jnp.asarray(step, jnp.float32), jnp.asarray(steps, jnp.float32)
    return jnp.where(steps > 0, jnp.minimum(1.0, step / jnp.maximum(steps, 1.0)), 1.0)


def annealed_kl(kl: Array, capacity: Array, gamma: Array) -> Array:
    """AnnealedVAE (Burgess et al. 2018): γ·|E[KL] − C| with the capacity C raised during
    training (`linear_ramp` times `model.c_max`); kl: per example [B]."""
    return gamma * jnp.abs(jnp.mean(kl) - capacity)


def covariance(x: Array) -> Array:
    """The batch covariance E[x xᵀ] − E[x] E[x]ᵀ (divided by B) of x [B, Z]: [Z, Z]."""
    centred = x - jnp.mean(x, axis=0)
    return centred.T @ centred / x.shape[0]


def dip_covariance(mean: Array, logvar: Array, variant: str) -> Array:
    """DIP-VAE's (Kumar et al. 2018) estimate of Cov[z]: Cov of the posterior means ("i"), or
    of the aggregate posterior, Cov of the means plus E[diag(σ²)] ("ii")."""
    cov = covariance(mean)
    if variant == "ii":
        cov = cov + jnp.diag(jnp.mean(jnp.exp(logvar), axis=0))
    return cov


def dip_penalty(cov: Array, lambda_od: Array, lambda_d: Array) -> Array:
    """λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)²."""
    diag = jnp.diagonal(cov)
    off_diagonal = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(diag))
    return lambda_od * off_diagonal + lambda_d * jnp.sum(jnp.square(diag - 1.0))


def gaussian_log_density(z: Array, mean: Array, logvar: Array) -> Array:
    """log N(z; mean, exp(logvar)) per dimension (broadcasting)."""
    return -0.5 * (jnp.log(2.0 * jnp.pi) + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


def total_correlation(z: Array, mean: Array, logvar: Array) -> Array:
    """β-TCVAE's (Chen et al. 2018) minibatch-weighted-sampling estimate of the total
    correlation KL(q(z) || Π_j q(z_j)) over the batch: the mean over i of
    log Σ_k q(z_i | x_k) − Σ_j log Σ_k q(z_ij | x_k). Like disentanglement_lib it leaves out
    the constant (Z − 1)·log(N·B) of the data set size N, which no gradient sees."""
    log_q = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])  # [B,B,Z]
    log_qz = jax.nn.logsumexp(jnp.sum(log_q, axis=2), axis=1)  # [B]
    log_qz_product = jnp.sum(jax.nn.logsumexp(log_q, axis=1), axis=1)  # [B]
    return jnp.mean(log_qz - log_qz_product)


def permute_dims(z: Array, rng: jax.Array) -> Array:
    """Each column of z [B, Z] shuffled by its own permutation of the batch: samples of
    Π_j q(z_j) (FactorVAE, Kim & Mnih 2018)."""
    keys = jax.random.split(rng, z.shape[1])
    return jax.vmap(lambda c, k: jax.random.permutation(k, c), in_axes=(1, 0), out_axes=1)(z, keys)


def factor_vae_tc(logits: Array) -> Array:
    """FactorVAE's density-ratio estimate of the total correlation from the discriminator's two
    logits [B, 2] (class 0: a code of q(z), class 1: a permuted one): E[l₀ − l₁]."""
    return jnp.mean(logits[:, 0] - logits[:, 1])


def factor_vae_discriminator_loss(logits: Array, permuted_logits: Array) -> Array:
    """The discriminator's cross-entropy: −½E[log D₀(z)] − ½E[log D₁(z̃)] (z̃ permuted)."""
    return -0.5 * (
        jnp.mean(jax.nn.log_softmax(logits)[:, 0])
        + jnp.mean(jax.nn.log_softmax(permuted_logits)[:, 1])
    )
