"""`genimg sample`: images from a workdir's latest (or best) checkpoint (EMA weights for GANs)."""

import os

import jax
import ml_collections
import numpy as np

from genimg_jax import checkpoint as checkpoint_lib
from genimg_jax import config as config_lib
from genimg_jax import family, parallel, sampling, trainer
from genimg_jax import logging as log_lib
from genimg_jax import state as state_lib
from genimg_jax.checkpoint import Checkpoints
from genimg_jax.errors import CheckpointError


def restore(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"):
    """The run's latest checkpointed state, or with which="best" the best-scored one
    (`checkpoints_best/`, kept when the run evaluated with `eval.best_metric` set)."""
    trainer.start_up(config)
    if which not in ("latest", "best"):
        raise CheckpointError(f"which={which!r}: use 'latest' or 'best'")
    folder = checkpoint_lib.LATEST if which == "latest" else checkpoint_lib.BEST
    if not os.path.isdir(os.path.join(workdir, folder)):
        raise CheckpointError(
            f"{os.path.join(workdir, folder)} holds no checkpoint; "
            + (
                f"train first: genimg train --config CONFIG --workdir {workdir}"
                if which == "latest"
                else "the best one is kept by runs that score themselves "
                "(eval.scores=True, eval.best_metric set)"
            )
        )
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints, folder)
    try:
        template = state_lib.initial_state(config, parallel.make_mesh())
        hint = config_lib.saved_config_hint(config, workdir)
        state, step = checkpoints.restore_latest_good(template, hint)  # BEST holds one save
        if step == 0:
            raise CheckpointError(f"{checkpoints.directory} holds no checkpoint")
    finally:
        checkpoints.abandon()
    return state


def draw(
    config: ml_collections.ConfigDict,
    workdir: str,
    num: int,
    seed: int = 0,
    which: str = "latest",
) -> np.ndarray:
    """`num` images [num, H, W, C] in the data's value range, drawn from the latents of seed
    `seed` with the run's latest (or best) checkpoint (EMA weights for GANs)."""
    state = restore(config, workdir, which)
    z = sampling.latents(jax.random.key(seed), num, config.model.latent_dim)
    return np.asarray(jax.jit(family.of(config).samples)(state, z))


def sample_to_png(
    config: ml_collections.ConfigDict,
    workdir: str,
    num: int,
    out: str,
    seed: int = 0,
    which: str = "latest",
) -> np.ndarray:
    """Draws `num` images (see `draw`) and writes them as a grid to `out`."""
    images = draw(config, workdir, num, seed, which)
    log_lib.save_png(log_lib.image_grid(images, family.of(config).value_range), out)
    return images
