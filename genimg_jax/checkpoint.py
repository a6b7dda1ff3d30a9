"""Orbax checkpoints of the whole training state: save every N steps, keep the last K,
restore the latest into the shapes and shardings of a freshly built state."""

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """An orbax CheckpointManager for one workdir's `checkpoints/` folder."""

    def __init__(self, workdir: str, keep: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def restore(self, template, step: int | None = None):
        """The state saved at `step` (default: the latest), shaped and sharded like `template`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def save(self, step: int, state) -> None:
        """Starts an asynchronous save of `state` as `step` (device->host copy happens now)."""
        self.manager.save(step, args=ocp.args.StandardSave(state))

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
