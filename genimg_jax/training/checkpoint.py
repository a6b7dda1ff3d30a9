"""Orbax checkpoints of the whole training state: save every N steps, keep the last K, restore
the latest readable one into the shapes and shardings of a freshly built state.

Orbax writes each step into a temporary folder and renames it when complete, so a save cut
short (SIGKILL, full disk) is never taken for a checkpoint. A checkpoint that cannot be read
(truncated, altered) is moved to `checkpoints_corrupt/` and the previous one is used.
"""

import contextlib
import os
import re
import shutil
import sys

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.metadata import array_metadata_store  # orbax's default's (pinned)

from genimg_jax.core.errors import CheckpointError


def _shapes(tree) -> dict[str, tuple]:
    """{'g/params/Dense_0/kernel': ((64, 3136), 'float32'), ...} for a state or its metadata."""
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): (
            tuple(leaf.shape),
            str(leaf.dtype),
        )
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def describe_mismatch(saved: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
    """Lines naming each array whose presence, shape or dtype differs."""
    lines = []
    for name in sorted(saved.keys() | expected.keys()):
        if name not in expected:
            lines.append(f"{name}: in the checkpoint, not in the model")
        elif name not in saved:
            lines.append(f"{name}: in the model, not in the checkpoint")
        elif saved[name] != expected[name]:
            lines.append(f"{name}: checkpoint {saved[name]} vs model {expected[name]}")
    return lines


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """orbax's handler for a state of jax.Arrays: the arrays its StandardCheckpointHandler writes,
    and each handler restores the other's checkpoints (the step's metadata names the handler that
    wrote it). One setting differs on CPU: a replicated array is written from one device.
    orbax's replica-parallel save (its default off GPU) splits each replicated array into one
    slice per device, each slice an op compiled and dispatched on the host; host "devices" share
    one memory, so that only costs: with 8 of them, a quick VQGAN's 4 saves ran 13,000 slice ops
    and compiled 187 slice programs. On GPU orbax turns it off itself; on TPU it stays on (hosts
    share the writing)."""
    handler = ocp.type_handlers.ArrayHandler(
        use_replica_parallel=False if jax.default_backend() == "cpu" else None,
        array_metadata_store=array_metadata_store.Store(),
    )
    registry = ocp.type_handlers.create_type_handler_registry((jax.Array, handler))
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


LATEST = "checkpoints"  # the last K saves
BEST = "checkpoints_best"  # the one save with the best evaluation score


class Checkpoints:
    """An orbax CheckpointManager for one of a workdir's checkpoint folders: LATEST (the last
    `keep` saves) or BEST. With `best=(metric, "min" | "max")` each save carries its scores and
    the `keep` best by `metric` are kept; without, the newest."""

    def __init__(
        self,
        workdir: str,
        keep: int,
        folder: str = LATEST,
        best: tuple[str, str] | None = None,
    ):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, folder)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        if best:
            metric, mode = best
            options.best_fn = lambda metrics: metrics[metric]
            options.best_mode = mode
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=_state_handler()
        )
        folder = os.path.basename(self.directory).replace("checkpoints", "checkpoints_corrupt")
        self.corrupt_directory = os.path.join(self.workdir, folder)  # where unreadable ones go
        self._requested: int | None = None  # the step of the last save asked for

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def check_compatible(self, step: int, template, hint: str = "") -> None:
        """Raises CheckpointError listing the arrays whose shapes differ from `template`'s."""
        metadata = self.manager.item_metadata(step)
        if metadata is None:
            return  # unreadable metadata: the restore itself will report it
        lines = describe_mismatch(_shapes(metadata), _shapes(template))
        if lines:
            listing = "\n  ".join(
                lines[:20] + ([f"... {len(lines) - 20} more"] * (len(lines) > 20))
            )
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} does not fit this config's model"
                f"{hint}:\n  {listing}\nResume with the config the run was started with, or "
                f"train the new config in another --workdir."
            )

    def restore(self, template, step: int | None = None):
        """The state saved at `step` (default: the latest), shaped and sharded like `template`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
        args = ocp.args.PyTreeRestore(abstract, restore_args=restore_args)
        return self.manager.restore(step, args=args)

    def restore_latest_good(self, template, hint: str = "") -> tuple[object, int]:
        """(state, step) from the newest checkpoint that fits and reads; (template, 0) when there
        is none. Unreadable checkpoints are moved aside with a warning; if none was readable, a
        CheckpointError names them."""
        bad = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            self.check_compatible(step, template, hint)
            try:
                return self.restore(template, step), step
            except Exception as e:  # noqa: BLE001  orbax/tensorstore raise many types here
                moved = self._quarantine(step)
                bad.append(f"step {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                print(
                    f"genimg: warning: checkpoint step {step} is unreadable and was moved to "
                    f"{moved}; trying the previous one",
                    file=sys.stderr,
                )
        if bad:
            raise CheckpointError(
                f"no readable checkpoint in {self.directory} (" + "; ".join(bad) + "). They were "
                f"moved to {self.corrupt_directory}/; rerun to start from step 0, or "
                f"restore a backup of the workdir."
            )
        return template, 0

    def _quarantine(self, step: int) -> str:
        """Moves a damaged step out of the manager's sight (so the step can be saved again)."""
        source = os.path.join(self.directory, str(step))
        target = os.path.join(self.corrupt_directory, str(step))
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(source, target)
        self.manager.reload()
        return target

    def best(self) -> tuple[int, dict] | None:
        """(step, scores) of the best save of a `best=` manager, or None before the first."""
        step = self.manager.best_step()
        return None if step is None else (step, dict(self.manager.metrics(step)))

    def delete_after(self, step: int) -> None:
        """Deletes the saves after `step` (those of a run's future that a resume discarded)."""
        for later in [s for s in self.manager.all_steps() if s > step]:
            self.manager.delete(later)

    def save(self, step: int, state, metrics: dict[str, float] | None = None) -> None:
        """Starts an asynchronous save of `state` as `step` (device->host copy happens now)."""
        self._requested = step
        try:
            self.manager.save(step, args=ocp.args.PyTreeSave(state), metrics=metrics)
        except Exception as e:  # noqa: BLE001  a failed earlier async save surfaces here too
            raise self._write_error(step, e) from None

    def wait(self) -> None:
        """Waits for a pending save (raising if it failed). Saves of two managers must not
        overlap in multi-process runs: orbax's cross-process barriers are keyed by step."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001  any failure of the pending async save
            raise self._write_error(self._requested, e) from None

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        try:
            self.wait()
        finally:
            self.manager.close()

    def abandon(self) -> None:
        """Releases the manager after a failure, without raising again."""
        with contextlib.suppress(Exception):
            self.manager.close()

    def _write_error(self, step: int | None, error: Exception) -> CheckpointError:
        text = str(error)
        failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)  # the save that failed
        code = re.search(r"os_error_code='(\d+)'", text)
        reason = os.strerror(int(code.group(1))) if code else type(error).__name__
        self.manager.reload()
        intact = self.manager.all_steps()
        return CheckpointError(
            f"could not write checkpoint step {failed.group(1) if failed else step} to "
            f"{self.directory}: {reason} ({text.splitlines()[0][:200]}). Free space on that disk "
            f"or make it writable, then rerun to resume; intact checkpoints: {intact or 'none'}."
        )
