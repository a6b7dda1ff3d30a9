"""The pure VAE step: (TrainState, batch, rng) -> (TrainState, metrics)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from genimg_jax.losses import gaussian_kl, vae_loss
from genimg_jax.state import TrainState

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [0, 1], ...}


def vae_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    reconstruction: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[TrainState, dict]:
    """One update of L = L_recon + β·KL(q(z|x) || N(0, I)); β is `state.hparams["beta"]`."""
    x = batch["image"]

    def loss_fn(params):
        logits, mean, logvar = state.apply_fn({"params": params}, x, rngs={"reparam": rng})
        recon = reconstruction(x, logits)
        kl = gaussian_kl(mean, logvar)
        return vae_loss(recon, kl, state.hparams["beta"]), (jnp.mean(recon), jnp.mean(kl))

    (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {
        "loss": loss,
        "recon": recon,
        "kl": kl,
        "neg_elbo": recon + kl,
        "grad_norm": optax.tree.norm(grads),
    }
    return state.apply_gradients(grads=grads), metrics
