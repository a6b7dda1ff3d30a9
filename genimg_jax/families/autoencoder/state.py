"""The autoencoder families' training state: the autoencoder's TrainState (its codebook's
moving averages in `stats`), the PatchGAN's (None without a discriminator) and the frozen
weights of the perceptual distance (None without one; `features.perceptual`)."""

from typing import Any

import flax
import jax

from genimg_jax.core.state import TrainState


@flax.struct.dataclass
class AutoencoderState:
    """`step` counts the autoencoder's updates."""

    ae: TrainState
    d: TrainState | None
    perceptual: Any = None

    @property
    def step(self) -> jax.Array:
        return self.ae.step
