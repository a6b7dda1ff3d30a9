"""`genimg sample`: images from a workdir's latest checkpoint (EMA weights for GANs)."""

import os

import jax
import ml_collections
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import logging as log_lib
from genimg_jax import models, parallel, sampling, trainer
from genimg_jax.checkpoint import Checkpoints
from genimg_jax.errors import CheckpointError


def restore_latest(config: ml_collections.ConfigDict, workdir: str):
    """The latest checkpointed state of the run in `workdir`."""
    config_lib.validate(config)
    no_checkpoint = CheckpointError(
        f"{workdir} holds no checkpoint; train first: genimg train --config CONFIG "
        f"--workdir {workdir}"
    )
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise no_checkpoint
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    template = trainer.initial_state(config, parallel.make_mesh())
    state, step = checkpoints.restore_latest_good(template, trainer.config_hint(config, workdir))
    checkpoints.close()
    if step == 0:
        raise no_checkpoint
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
