"""GAN losses and VAE ELBO terms: pure jnp functions of logits and distribution parameters."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


# --------------------------------------------------------------------------------------------
# GAN losses. D outputs logits l, with D(x) = sigmoid(l). Using -log sigmoid(l) = softplus(-l)
# and -log(1 - sigmoid(l)) = softplus(l) keeps every term finite for any logit.


def non_saturating_d_loss(real_logits: Array, fake_logits: Array) -> Array:
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))], from logits."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits: Array) -> Array:
    """L_G = -E[log D(G(z))] (the non-saturating generator loss), from logits."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


class GANLoss(NamedTuple):
    """A discriminator loss and the generator loss that goes with it."""

    d_loss: Callable[[Array, Array], Array]  # (real_logits, fake_logits) -> scalar
    g_loss: Callable[[Array], Array]  # fake_logits -> scalar


GAN_LOSSES: dict[str, GANLoss] = {
    "non_saturating": GANLoss(non_saturating_d_loss, non_saturating_g_loss),
}


# --------------------------------------------------------------------------------------------
# VAE terms. Per-example values are summed over pixels / latent dimensions, then averaged over
# the batch, so that the loss is the negative ELBO per example (in nats).


def gaussian_kl(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over latent dims: [B, Z] -> [B]."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def mse_reconstruction(x: Array, logits: Array) -> Array:
    """||x - x̂||² per example with x̂ = sigmoid(logits): [B, H, W, C] -> [B]."""
    x_hat = jax.nn.sigmoid(logits)
    return jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=-1)


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
