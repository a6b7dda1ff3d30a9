"""Reductions and random draws inside a step that mean the same under `jax.jit` (the step sees
the global batch, `axis_name=None`) and `jax.pmap` (one device's rows, `axis_name` the device
axis): batch means over the global batch, random draws made for the global batch and then
sliced, so results do not depend on how the batch is split."""

import jax

AXIS = "data"  # the device axis: the mesh's axis name, and pmap's


def mean(tree, axis_name: str | None):
    """The mean over devices of per-device means (pmap), or the tree unchanged (jit)."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def global_rows(draw, rng: jax.Array, rows: int, axis_name: str | None) -> jax.Array:
    """`draw(rng, n)` made for the global batch (n = rows · devices) and sliced to this device's
    `rows` under pmap (`axis_name`); all of it under jit. The global draw is the same whatever
    the device count, so the samples are too."""
    if axis_name is None:
        return draw(rng, rows)
    devices = jax.lax.psum(1, axis_name)
    draws = draw(rng, rows * devices)
    return jax.lax.dynamic_slice_in_dim(draws, jax.lax.axis_index(axis_name) * rows, rows)


def normal_rows(rng: jax.Array, rows: int, shape: tuple, axis_name: str | None) -> jax.Array:
    """N(0, 1) draws [rows, *shape] for this device's rows of the global batch."""
    return global_rows(lambda k, n: jax.random.normal(k, (n, *shape)), rng, rows, axis_name)


def global_count(rows: int, axis_name: str | None) -> jax.Array | int:
    """The global batch's rows: `rows` times the devices under pmap."""
    return rows * (jax.lax.psum(1, axis_name) if axis_name else 1)
