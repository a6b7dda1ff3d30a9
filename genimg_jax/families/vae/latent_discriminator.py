"""FactorVAE's discriminator (Kim & Mnih 2018): an MLP on latent codes telling codes of q(z)
(class 0) from codes whose dimensions were shuffled across the batch (class 1), so its logits
estimate the total correlation of q(z). Sized as in their paper and disentanglement_lib: six
hidden layers of 1000 units, leaky ReLU with slope 0.2 (`model.disc_layers`, `disc_hidden`)."""

import flax.linen as nn
import jax


class LatentDiscriminator(nn.Module):
    """z [B, Z] -> two logits [B, 2]."""

    hidden: int = 1000
    layers: int = 6

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z
        for _ in range(self.layers):
            h = nn.leaky_relu(nn.Dense(self.hidden)(h), negative_slope=0.2)
        return nn.Dense(2)(h)
