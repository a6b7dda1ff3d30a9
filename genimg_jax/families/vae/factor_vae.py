"""FactorVAE (Kim & Mnih 2018): the VAE and a discriminator on its codes that estimates their
total correlation (`latent_discriminator`), each with its own TrainState, trained in one step:
the VAE's update (its TC term read from the discriminator), then the discriminator's."""

import functools

import flax
import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import collectives, losses
from genimg_jax.core.state import TrainState
from genimg_jax.families.vae.latent_discriminator import LatentDiscriminator
from genimg_jax.families.vae.step import Batch, VAEStep, vae_update


@flax.struct.dataclass
class FactorVAEState:
    """FactorVAE's VAE and the discriminator on its codes; `step` counts VAE updates."""

    vae: TrainState
    disc: TrainState

    step = property(lambda self: self.vae.step)


@functools.lru_cache(maxsize=8)
def discriminator(
    hidden: int, layers: int
) -> tuple[LatentDiscriminator, optax.GradientTransformation]:
    """FactorVAE's discriminator and its optimizer, Adam with b1 = 0.5, b2 = 0.9 as Kim & Mnih
    (learning rate traced: `train.disc_lr`). Cached: members of a sweep share them, hence the
    treedef of their states, hence one compiled step."""
    return LatentDiscriminator(hidden, layers), optax.inject_hyperparams(optax.adam)(
        learning_rate=0.0, b1=0.5, b2=0.9
    )


def discriminator_update(disc: TrainState, z: jax.Array, rng: jax.Array, axis_name):
    """FactorVAE's discriminator step on codes z [B, Z] (whole batch, no gradient to the VAE)
    against their dimension-wise permutation: (new disc, metrics)."""
    permuted = losses.permute_dims(z, rng)

    def loss_fn(params):
        logits = disc.apply_fn({"params": params}, z)
        permuted_logits = disc.apply_fn({"params": params}, permuted)
        loss = losses.factor_vae_discriminator_loss(logits, permuted_logits)
        accuracy = 0.5 * (
            jnp.mean(logits[:, 0] > logits[:, 1])
            + jnp.mean(permuted_logits[:, 1] > permuted_logits[:, 0])
        )
        return loss, accuracy

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc.params)
    grads = collectives.mean(grads, axis_name)  # equal on every device (the same global codes)
    return disc.apply_gradients(grads=grads), {"disc_loss": loss, "disc_accuracy": accuracy}


def factor_vae_step(
    state: FactorVAEState, batch: Batch, rng: jax.Array, spec: VAEStep, axis_name=None
) -> tuple[FactorVAEState, dict]:
    """The VAE's update against the discriminator's TC estimate, then the discriminator's
    update on the (stopped) codes."""
    vae, metrics, z = vae_update(state.vae, batch, rng, spec, axis_name, disc=state.disc)
    z = jax.lax.stop_gradient(z)
    disc, disc_metrics = discriminator_update(state.disc, z, jax.random.fold_in(rng, 1), axis_name)
    return FactorVAEState(vae=vae, disc=disc), metrics | disc_metrics
