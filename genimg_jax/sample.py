"""`genimg sample`: images from a workdir's latest checkpoint (EMA weights for GANs)."""

import jax
import ml_collections
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import logging as log_lib
from genimg_jax import models, parallel, sampling, trainer
from genimg_jax.checkpoint import Checkpoints


class NoCheckpointError(config_lib.ConfigError):
    """The workdir holds no checkpoint to sample from."""


def restore_latest(config: ml_collections.ConfigDict, workdir: str):
    """The latest checkpointed state of the run in `workdir`."""
    config_lib.validate(config)
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    step = checkpoints.latest_step()
    if step is None:
        raise NoCheckpointError(
            f"{checkpoints.directory} holds no checkpoint; train first: "
            f"genimg train --config CONFIG --workdir {workdir}"
        )
    state = checkpoints.restore(trainer.initial_state(config, parallel.make_mesh()), step)
    checkpoints.close()
    return state


def sample_to_png(
    config: ml_collections.ConfigDict, workdir: str, num: int, out: str, seed: int = 0
) -> np.ndarray:
    """Draws `num` images from the prior/latents of seed `seed` and writes them as a grid."""
    state = restore_latest(config, workdir)
    kind = models.get_family(config.model.family).kind
    z = sampling.latents(jax.random.key(seed), num, config.model.latent_dim)
    draw = sampling.gan_samples if kind == "gan" else sampling.vae_prior_samples
    images = np.asarray(jax.jit(draw)(state, z))
    log_lib.save_png(log_lib.image_grid(images, trainer.value_range(config)), out)
    return images
