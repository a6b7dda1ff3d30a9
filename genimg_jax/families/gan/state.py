"""The GAN family's training state: one TrainState per network."""

import flax
import jax

from genimg_jax.core.state import TrainState


@flax.struct.dataclass
class GANState:
    """The generator's and the discriminator's states; `step` counts G updates."""

    g: TrainState
    d: TrainState

    @property
    def step(self) -> jax.Array:
        return self.g.step
