"""The pure VAE step: (TrainState, batch, rng) -> (TrainState, metrics)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from genimg_jax import parallel
from genimg_jax.losses import gaussian_kl, vae_loss
from genimg_jax.state import TrainState, skipped_updates

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [0, 1], ...}


def vae_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    reconstruction: Callable[[jax.Array, jax.Array], jax.Array],
    latent_dim: int,
    axis_name: str | None = None,
) -> tuple[TrainState, dict]:
    """One update of L = L_recon + β·KL(q(z|x) || N(0, I)); β is `state.hparams["beta"]`.
    `axis_name`: None under jit, the device axis under pmap (see `genimg_jax.parallel`)."""
    x = batch["image"]
    eps = parallel.normal_rows(rng, x.shape[0], (latent_dim,), axis_name)  # reparameterisation

    def loss_fn(params):
        logits, mean, logvar = state.apply_fn({"params": params}, x, eps)
        recon = reconstruction(x, logits)
        kl = gaussian_kl(mean, logvar)
        return vae_loss(recon, kl, state.hparams["beta"]), (jnp.mean(recon), jnp.mean(kl))

    (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = parallel.mean(grads, axis_name)
    metrics = parallel.mean({"loss": loss, "recon": recon, "kl": kl}, axis_name)
    metrics |= {"neg_elbo": metrics["recon"] + metrics["kl"], "grad_norm": optax.tree.norm(grads)}
    state = state.apply_gradients(grads=grads)
    if (skipped := skipped_updates(state)) is not None:
        metrics["skipped"] = skipped
    return state, metrics
