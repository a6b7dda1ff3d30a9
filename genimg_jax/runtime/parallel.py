"""Devices and hosts: the `data` mesh, shardings, multi-host start-up, and the pieces that let the
same pure steps run under `jax.jit` (global arrays) or `jax.pmap` (per-device shards).

Under jit the step sees the global batch and XLA inserts the cross-device reductions. Under pmap
the step sees one device's rows and `axis_name="data"` names the axis to reduce over; the helpers
below make both give the same numbers (batch means over the global batch, random draws made for
the global batch and then sliced), so results do not depend on how the batch is split.
"""

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genimg_jax.core.collectives import AXIS
from genimg_jax.core.errors import GenimgError


class ParallelError(GenimgError, ValueError):
    """Devices, hosts and batch size do not fit together; the message says how to fix it."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# Start-up: joining a multi-process run.


def initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
    """Joins a multi-process run: from `parallel.coordinator_address` / `num_processes` /
    `process_id` when set; else, with `parallel.multihost` "yes" (or "auto" when SLURM or Open
    MPI describe several tasks), lets JAX read them from the cluster (SLURM, TPU VMs, MPI)."""
    if jax.distributed.is_initialized() or cfg.multihost == "no":
        return
    if cfg.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator_address,
            num_processes=cfg.num_processes or None,
            process_id=cfg.process_id if cfg.process_id >= 0 else None,
        )
    elif cfg.multihost == "yes" or _cluster_environment():
        jax.distributed.initialize()


def _cluster_environment() -> bool:
    """Whether SLURM or Open MPI describe a job of several tasks (TPU VMs: multihost="yes")."""
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    return slurm or mpi


# --------------------------------------------------------------------------------------------
# Mesh and shardings.


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh named `data` over the first `num_devices` devices (0: all of all processes)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise ParallelError(
            f"parallel.num_devices={num_devices} but only {len(devices)} devices exist "
            f"({jax.default_backend()}); use at most {len(devices)}, or 0 for all"
        )
    if num_devices and jax.process_count() > 1:
        raise ParallelError("parallel.num_devices must be 0 (all devices) in a multi-process run")
    return Mesh(np.asarray(devices[: num_devices or len(devices)]), (AXIS,))


def batch_sharding(mesh: Mesh, steps: int = 1) -> NamedSharding:
    """The batch axis split over `data`: the leading one, or the second one of `steps` > 1
    steps' batches stacked on a leading axis."""
    return NamedSharding(mesh, PartitionSpec(*[None] * (steps > 1), AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, devices: int) -> None:
    """Raises ParallelError unless the global batch splits evenly over `devices` devices."""
    if batch_size % devices:
        raise ParallelError(
            f"train.batch_size={batch_size} is not divisible by the {devices} devices; "
            f"use a multiple of {devices}"
        )


def global_batch(local_batch: dict, mesh: Mesh, steps: int = 1) -> dict:
    """This process's rows of the global batch -> global arrays sharded along `data` (with
    `steps` > 1: of that many steps' batches, stacked on a leading axis)."""
    sharding = batch_sharding(mesh, steps)
    if jax.process_count() == 1:  # the rows are the global batch: one transfer for the tree
        return jax.device_put(local_batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def replicate_global(tree, mesh: Mesh):
    """Host values, identical on every process -> global arrays replicated over the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda i: np.asarray(x)[i]),
        jax.device_get(tree),
    )


def to_host(tree):
    """Replicated global arrays -> NumPy values, on every process (each holds a full copy)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


# --------------------------------------------------------------------------------------------
# pmap layout: a leading axis of one entry per local device.


def local_devices(mesh: Mesh) -> list:
    """The mesh's devices that belong to this process."""
    return [d for d in mesh.devices.flat if d.process_index == jax.process_index()]


def one_program_at_a_time(mesh: Mesh) -> bool:
    """Whether to wait for each program over `mesh` before dispatching the next: XLA:CPU can
    deadlock in a collective when several multi-device programs are in flight on few cores
    (seen with 8 host devices on 2 cores). Accelerators and single-device programs keep
    asynchronous dispatch."""
    return jax.default_backend() == "cpu" and len(local_devices(mesh)) > 1


def _stacked(mesh: Mesh) -> NamedSharding:
    """A leading axis with one entry per local device, each entry on its device."""
    return NamedSharding(Mesh(np.asarray(local_devices(mesh)), (AXIS,)), PartitionSpec(AXIS))


def pmap_replicate(tree, mesh: Mesh):
    """A replicated global state -> one copy per local device, stacked on a leading axis."""
    n = len(local_devices(mesh))
    host = to_host(tree)
    return jax.device_put(
        jax.tree.map(lambda x: np.broadcast_to(x, (n, *x.shape)), host), _stacked(mesh)
    )


def pmap_unreplicate(tree, mesh: Mesh):
    """One device's copy of a pmapped state, as global arrays replicated over the mesh."""
    return replicate_global(jax.tree.map(lambda x: x[0], tree), mesh)


def pmap_shard(local_batch: dict, mesh: Mesh, steps: int = 1) -> dict:
    """This process's rows [b, ...] -> [local devices, b / local devices, ...] on those devices
    (with `steps` > 1, rows [steps, b, ...] -> [local devices, steps, b / local devices, ...])."""
    n = len(local_devices(mesh))

    def split(x: np.ndarray) -> np.ndarray:
        if steps > 1:
            return x.reshape(steps, n, -1, *x.shape[2:]).swapaxes(0, 1)
        return x.reshape(n, -1, *x.shape[1:])

    return jax.device_put(jax.tree.map(split, local_batch), _stacked(mesh))
