"""`genimg sample`: images from a workdir's latest (or best) checkpoint (EMA weights for GANs), as a\ngrid, an array or a folder of PNGs for external FID tools."""

import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from genimg_jax import config as config_lib
from genimg_jax.core import family
from genimg_jax.core import state as state_lib
from genimg_jax.core.errors import CheckpointError
from genimg_jax.families import sampling
from genimg_jax.runtime import parallel
from genimg_jax.train import checkpoint as checkpoint_lib
from genimg_jax.train import loop as trainer
from genimg_jax.train import outputs as log_lib
from genimg_jax.train.checkpoint import Checkpoints


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


SAMPLE_BATCH = 500  # images drawn per compiled call
FORMATS = ("grid", "npz", "png-dir")


def draw_batches(
    config: ml_collections.ConfigDict,
    workdir: str,
    num: int,
    seed: int = 0,
    which: str = "latest",
    batch: int = SAMPLE_BATCH,
) -> Iterator[np.ndarray]:
    """The images of `draw`, `batch` at a time, by one compiled program (the last batch is
    padded to its shape)."""
    state = restore(config, workdir, which)
    z = sampling.latents(jax.random.key(seed), num, config.model.latent_dim)
    labels = sampling.class_labels(num, config)  # by the sample's index, not by batch
    samples = jax.jit(family.of(config).samples)
    size = min(batch, num)

    def padded(x: jax.Array | None, part: slice) -> jax.Array | None:  # to the compiled shape
        if x is None:
            return None
        x = x[part]
        return jnp.pad(x, [(0, size - len(x))] + [(0, 0)] * (x.ndim - 1))

    for start in range(0, num, size):
        part = slice(start, start + size)
        images = samples(state, padded(z, part), padded(labels, part))
        yield np.asarray(images)[: min(size, num - start)]


def draw(
    config: ml_collections.ConfigDict,
    workdir: str,
    num: int,
    seed: int = 0,
    which: str = "latest",
) -> np.ndarray:
    """`num` images [num, H, W, C] in the data's value range, drawn from the latents of seed
    `seed` with the run's latest (or best) checkpoint (EMA weights for GANs)."""
    return np.concatenate(list(draw_batches(config, workdir, num, seed, which)))


def export(
    config: ml_collections.ConfigDict,
    workdir: str,
    num: int,
    out: str,
    fmt: str = "grid",
    seed: int = 0,
    which: str = "latest",
    batch: int = SAMPLE_BATCH,
) -> str:
    """Writes `num` images (see `draw`) to `out` as `fmt`: "grid" (one PNG), "npz" (uint8
    [num, H, W, C] under the key "images", as clean-fid and torch-fidelity read arrays) or
    "png-dir" (`out/000000.png`, ... for pytorch-fid, clean-fid, torch-fidelity); returns `out`.
    Images are drawn `batch` at a time, with a progress bar."""
    if fmt not in FORMATS:
        raise CheckpointError(f"--format={fmt!r}: use one of {list(FORMATS)}")
    value_range = family.of(config).value_range
    if fmt == "grid":
        log_lib.save_png(
            log_lib.image_grid(draw(config, workdir, num, seed, which), value_range), out
        )
        return out
    os.makedirs(out if fmt == "png-dir" else os.path.dirname(os.path.abspath(out)), exist_ok=True)
    parts, written = [], 0
    with tqdm(total=num, unit="image", dynamic_ncols=True, mininterval=1.0) as progress:
        for images in draw_batches(config, workdir, num, seed, which, batch):
            pixels = log_lib.to_uint8(images, value_range)
            if fmt == "npz":
                parts.append(pixels)
            else:
                for image in pixels:
                    log_lib.save_png(image, os.path.join(out, f"{written:06d}.png"))
                    written += 1
            progress.update(len(images))
    if fmt == "npz":
        np.savez(out, images=np.concatenate(parts))
    return out
