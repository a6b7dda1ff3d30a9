"""Pure GAN step functions: (GANState, batch, rng) -> (GANState, metrics).

`axis_name` is None under `jax.jit` (the batch is global) and the pmap axis under `jax.pmap`
(the batch is one device's rows); see `genimg_jax.parallel`.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from genimg_jax import parallel
from genimg_jax.losses import GANLoss
from genimg_jax.state import GANState, TrainState, skipped_updates

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [-1, 1], ...}


def _latents(rng: jax.Array, batch: Batch, latent_dim: int, axis_name: str | None) -> jax.Array:
    """z ~ N(0, I): [B, Z], this device's rows of the global batch's latents."""
    return parallel.normal_rows(rng, batch["image"].shape[0], (latent_dim,), axis_name)


def _generate(g: TrainState, params, z: jax.Array) -> tuple[jax.Array, dict]:
    """G(z) in training mode (batch statistics), and G's updated BatchNorm statistics."""
    fake, updates = g.apply_fn(g.variables(params), z, train=True, mutable=["batch_stats"])
    return fake, updates.get("batch_stats", g.batch_stats)


def ema_warmup(decay: float, step: jax.Array) -> jax.Array:
    """The EMA decay at `step`: min(decay, (1 + step) / (10 + step)), so that early averages are
    not dominated by the random initial weights."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def d_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """One discriminator update on real images and G's samples; G is left untouched."""
    fake, _ = _generate(state.g, state.g.params, _latents(rng, batch, latent_dim, axis_name))
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params):
        # Two passes, not one over concat([real, fake]): concatenating along the sharded batch
        # axis would make XLA move rows between devices (all-gathers) on every step.
        d = functools.partial(state.d.apply_fn, state.d.variables(d_params), train=True)
        real_logits, fake_logits = d(batch["image"]), d(fake)
        return loss.d_loss(real_logits, fake_logits), (real_logits, fake_logits)

    (d_loss, (real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.d.params
    )
    grads = parallel.mean(grads, axis_name)
    metrics = {
        "d_loss": d_loss,
        "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
        "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
    }
    metrics = parallel.mean(metrics, axis_name) | {"d_grad_norm": optax.tree.norm(grads)}
    d = state.d.apply_gradients(grads=grads)
    if (skipped := skipped_updates(d)) is not None:
        metrics["d_skipped"] = skipped
    return state.replace(d=d), metrics


def g_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    ema_decay: float,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """One generator update against a frozen D; updates G's BatchNorm statistics and EMA."""
    z = _latents(rng, batch, latent_dim, axis_name)

    def loss_fn(g_params):
        fake, batch_stats = _generate(state.g, g_params, z)
        logits = state.d.apply_fn(state.d.variables(), fake, train=True)
        return loss.g_loss(logits), batch_stats

    (g_loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
    grads = parallel.mean(grads, axis_name)
    batch_stats = jax.tree.map(  # running statistics never take a non-finite batch's values
        lambda new, old: jnp.where(jnp.isfinite(new), new, old), batch_stats, state.g.batch_stats
    )
    g = state.g.apply_gradients(grads=grads, batch_stats=batch_stats)
    if g.ema_params is not None:
        g = g.replace(
            ema_params=optax.incremental_update(
                g.params, g.ema_params, step_size=1.0 - ema_warmup(ema_decay, g.step)
            )
        )
    metrics = {"g_loss": parallel.mean(g_loss, axis_name), "g_grad_norm": optax.tree.norm(grads)}
    if (skipped := skipped_updates(g)) is not None:
        metrics["g_skipped"] = skipped
    return state.replace(g=g), metrics


def train_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    ema_decay: float,
    d_steps: int = 1,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """`d_steps` D updates then one G update on the same batch, as one program."""
    metrics = {}
    shared = {"loss": loss, "latent_dim": latent_dim, "axis_name": axis_name}
    for i in range(d_steps):
        state, metrics = d_step(state, batch, jax.random.fold_in(rng, i), **shared)
    rng_g = jax.random.fold_in(rng, d_steps)
    state, g_metrics = g_step(state, batch, rng_g, ema_decay=ema_decay, **shared)
    return state, {**metrics, **g_metrics}
