"""`genimg reconstruct`, `genimg encode`, `genimg decode`: a run's encoder and decoder (an
autoencoder's codes or latents, a VAE's posterior means) on the images of a split and back.

All three encode and decode `CHUNK` images per call of one compiled program (the last chunk
padded), so `decode` of `encode`'s file gives bitwise the images `reconstruct` shows."""

import functools
import os

import jax
import ml_collections
import numpy as np

from genimg_jax import families
from genimg_jax.core.errors import CheckpointError
from genimg_jax.data import pipeline
from genimg_jax.families.draw import CHUNK, in_chunks
from genimg_jax.training import member
from genimg_jax.training import outputs as log_lib

LATENT_KEYS = ("codes", "latents")  # an npz holds the one its family makes


def split_images(config: ml_collections.ConfigDict, split: str, num: int = 0):
    """(images [n, H, W, C] as the model reads them, labels [n] or None): the first `num`
    images of `split` (every one when 0)."""
    data = config.data
    pipeline.prepare_data(data)
    source = pipeline.load_data_split(data, split)
    example = source.get(np.arange(min(num, len(source)) if num else len(source)))
    images = pipeline.fit_images(example["image"], data.image_size, data.channels)
    x = pipeline.model_images(images, families.of(config).value_range, data.binarize)
    return x, example.get("label")


@functools.cache
def _compiled(family: families.Family, method: str):
    """The family's `encode` or `decode`, jitted once per process."""
    return jax.jit(getattr(family, method))


def encode_images(config, state, x: np.ndarray) -> np.ndarray:
    """`Family.encode` of x, CHUNK rows per call."""
    encode = _compiled(families.of(config), "encode")
    return np.concatenate(list(in_chunks(encode, state, x, CHUNK)))


def decode_latents(config, state, latents: np.ndarray) -> np.ndarray:
    """`Family.decode` of latents or codes, CHUNK rows per call."""
    decode = _compiled(families.of(config), "decode")
    return np.concatenate(list(in_chunks(decode, state, latents, CHUNK)))


def reconstruct(
    config: ml_collections.ConfigDict,
    workdir: str,
    out: str,
    num: int = 32,
    split: str = "test",
    which: str = "latest",
    cols: int = 8,
) -> str:
    """Writes a PNG of the first `num` images of `split` in rows of `cols`, each row of
    originals above the row of their reconstructions; returns `out`."""
    families.of(config).check_offers("encode", "decode")  # before the checkpoint is read
    state = member.restore(config, workdir, which)
    x, _ = split_images(config, split, num)
    x_hat = decode_latents(config, state, encode_images(config, state, x))
    value_range = families.of(config).value_range
    rows = []
    for i in range(0, len(x), cols):
        for part in (x[i : i + cols], x_hat[i : i + cols]):  # a short last row: black tiles
            rows.append(
                np.pad(part, [(0, cols - len(part))] + [(0, 0)] * 3, constant_values=value_range[0])
            )
    log_lib.save_png(log_lib.image_grid(np.concatenate(rows), value_range, cols), out)
    return out


def encode(
    config: ml_collections.ConfigDict,
    workdir: str,
    out: str,
    split: str = "train",
    num: int = 0,
    which: str = "latest",
) -> str:
    """Writes `out` (.npz): "codes" int32 [N, h, w] of a codebook or "latents" float32 (a KL
    autoencoder's [N, h, w, c] posterior means, a VAE's [N, Z]) of the first `num` images of
    `split` (all when 0), their "labels" when the data has them, and the run's "step"."""
    families.of(config).check_offers("encode")  # before the checkpoint is read
    state = member.restore(config, workdir, which)
    x, labels = split_images(config, split, num)
    latents = encode_images(config, state, x)
    key = "codes" if np.issubdtype(latents.dtype, np.integer) else "latents"
    arrays = {key: latents, "step": np.int64(jax.device_get(state.step))}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez(out, **arrays)
    return out


def decode(
    config: ml_collections.ConfigDict, workdir: str, latents_file: str, which: str = "latest"
) -> np.ndarray:
    """The images [N, H, W, C] (in the family's value range) that the run decodes from the
    codes or latents of an `encode` file."""
    families.of(config).check_offers("decode")  # before the file and the checkpoint are read
    try:
        with np.load(latents_file) as f:
            found = [k for k in LATENT_KEYS if k in f]
            if not found:
                raise CheckpointError(
                    f"{latents_file} holds neither 'codes' nor 'latents': give a file written "
                    "by genimg encode"
                )
            latents = f[found[0]]
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {latents_file} ({e}): give a genimg encode .npz")
    state = member.restore(config, workdir, which)
    return decode_latents(config, state, latents)
