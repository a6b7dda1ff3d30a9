"""Drawing images from a trained state: GAN samples (EMA weights), VAE prior samples and
reconstructions. Pure functions, jit-able, used by the training loop and `genimg sample`."""

import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.core.state import GANState, TrainState
from genimg_jax.models.common import fixed_labels, model_inputs


def gan_samples(state: GANState, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """G(z[, labels]) with the EMA weights when kept, BatchNorm in inference mode: [N, H, W, C]
    in [-1, 1]. A conditional G without labels draws the classes 0, 1, ..., K-1, 0, ... of the
    batch's rows; an unconditional G is called without them."""
    g = state.g
    params = g.params if g.ema_params is None else g.ema_params
    return g.apply_fn(g.variables(params), *model_inputs(z, labels), train=False)


def vae_prior_samples(state: TrainState, z: jax.Array) -> jax.Array:
    """Mean of p(x|z) for z ~ p(z): [N, H, W, C] in [0, 1]."""
    return jax.nn.sigmoid(state.apply_fn({"params": state.params}, z, method="decode"))


def vae_reconstructions(state: TrainState, x: jax.Array) -> jax.Array:
    """Each input next to the mean of p(x | z = E[z|x]): [2N, H, W, C] in [0, 1], pairs adjacent."""
    mean, _ = state.apply_fn({"params": state.params}, x, method="encode")
    x_hat = jax.nn.sigmoid(state.apply_fn({"params": state.params}, mean, method="decode"))
    return jnp.stack([x, x_hat], axis=1).reshape(-1, *x.shape[1:])


def latents(key: jax.Array, num: int, latent_dim: int) -> jax.Array:
    """Fixed z ~ N(0, I) for sample grids: [num, latent_dim]."""
    return jax.random.normal(key, (num, latent_dim))


def class_labels(num: int, config: ml_collections.ConfigDict) -> jax.Array | None:
    """The classes of `num` samples of a conditional model (`model.num_classes` = K > 0): sample
    i draws class i mod K (`fixed_labels`), however the samples are batched; None otherwise."""
    k = config.model.get("num_classes", 0)
    return fixed_labels(num, k) if k > 0 else None
