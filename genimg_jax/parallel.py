"""Device mesh and shardings: the global batch is split along the mesh's `data` axis, states
are replicated."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all devices of all processes)."""
    return Mesh(np.asarray(devices or jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch splits evenly over the mesh's devices."""
    if batch_size % mesh.size:
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by the {mesh.size} devices; "
            f"use a multiple of {mesh.size}"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's rows of the global batch -> global arrays sharded along `data`."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
