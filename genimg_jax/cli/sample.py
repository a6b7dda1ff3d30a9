"""`genimg sample`: images from a workdir's latest (or best) checkpoint (EMA weights for GANs), as a\ngrid, an array or a folder of PNGs for external FID tools."""

import os
from collections.abc import Iterable, Iterator

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from genimg_jax import families
from genimg_jax.core.errors import CheckpointError
from genimg_jax.families import draw as draw_lib
from genimg_jax.training import member
from genimg_jax.training import outputs as log_lib

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
    family = families.of(config)
    family.check_offers("samples")  # an autoencoder is refused before its checkpoint is read
    state = member.restore(config, workdir, which)
    z = draw_lib.latents(jax.random.key(seed), num, config.model.latent_dim)
    labels = draw_lib.class_labels(num, config)  # by the sample's index, not by batch
    samples = jax.jit(family.samples)
    yield from draw_lib.in_parts(samples, state, z, labels, batch)


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
    batches = draw_batches(config, workdir, num, seed, which, batch)
    return write_images(batches, num, out, fmt, families.of(config).value_range)


def write_images(
    batches: Iterable[np.ndarray],
    num: int,
    out: str,
    fmt: str,
    value_range: tuple[float, float],
) -> str:
    """Writes the `num` images of `batches` (arrays [n, H, W, C] in `value_range`) to `out` as
    `fmt` (`export`'s formats) with a progress bar; returns `out`."""
    if fmt not in FORMATS:
        raise CheckpointError(f"--format={fmt!r}: use one of {list(FORMATS)}")
    if fmt == "grid":
        log_lib.save_png(log_lib.image_grid(np.concatenate(list(batches)), value_range), out)
        return out
    os.makedirs(out if fmt == "png-dir" else os.path.dirname(os.path.abspath(out)), exist_ok=True)
    parts, written = [], 0
    with tqdm(total=num, unit="image", dynamic_ncols=True, mininterval=1.0) as progress:
        for images in batches:
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
