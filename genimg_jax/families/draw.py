"""Drawing many samples from any family, the one way every caller does (`genimg sample`, the
scorers): fixed latents of a seed, classes by the sample's index, and `Family.samples` compiled
once and called on equal-sized parts (the last one padded); and any per-image function (an
encoder, a decoder) over many images the same way (`in_chunks`)."""

import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax.core.family import Family
from genimg_jax.models.common import fixed_labels


def latents(key: jax.Array, num: int, latent_dim: int) -> jax.Array:
    """Fixed z ~ N(0, I) for sample grids and scores: [num, latent_dim]."""
    return jax.random.normal(key, (num, latent_dim))


def class_labels(num: int, config: ml_collections.ConfigDict) -> jax.Array | None:
    """The classes of `num` samples of a conditional model (`model.num_classes` = K > 0): sample
    i draws class i mod K (`fixed_labels`), however the samples are batched; None otherwise."""
    k = config.model.get("num_classes", 0)
    return fixed_labels(num, k) if k > 0 else None


@functools.cache
def in_unit_range(family: Family) -> Callable:
    """`family.samples` mapped from its value range to [0, 1] (clipped), jitted: what feature
    networks read."""
    lo, hi = family.value_range

    def samples(state, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        return jnp.clip((family.samples(state, z, labels) - lo) / (hi - lo), 0.0, 1.0)

    return jax.jit(samples)


def in_parts(
    sample: Callable, state, z: jax.Array, labels: jax.Array | None, size: int
) -> Iterator[np.ndarray]:
    """`sample(state, z, labels)` (jitted) over z [N, Z] and labels [N] (or None), `size` rows
    per call: every call has the same shape (the last part padded), so it compiles once."""
    num = len(z)
    size = min(size, num)

    def padded(x: jax.Array | None, part: slice) -> jax.Array | None:
        if x is None:
            return None
        x = x[part]
        return jnp.pad(x, [(0, size - len(x))] + [(0, 0)] * (x.ndim - 1))

    for start in range(0, num, size):
        part = slice(start, start + size)
        images = sample(state, padded(z, part), padded(labels, part))
        yield np.asarray(images)[: min(size, num - start)]


CHUNK = 250  # images encoded or decoded per compiled call (`in_chunks`)


def in_chunks(fn: Callable, state, x: np.ndarray, size: int = CHUNK) -> Iterator[np.ndarray]:
    """fn(state, part) (jitted) over x's rows, `size` at a time: every call has the shape
    [size, ...] (short parts padded), so it compiles once and a row's result does not depend on
    how many rows there are (an encoder's codes decode bitwise to the reconstructions)."""
    for start in range(0, len(x), size):
        part = np.asarray(x[start : start + size])
        rows = len(part)
        part = np.pad(part, [(0, size - rows)] + [(0, 0)] * (part.ndim - 1))
        yield np.asarray(fn(state, part))[:rows]
