"""Running a sweep: every member (or one, by index) into its own folder, skipping finished ones.

Launchers:
- "inprocess": one after another in this process. Members differ only in hyperparameters, which
  are traced values of the state, so the training step is compiled once for all of them.
- "local": a pool of `genimg train` worker processes on this machine.
- "submitit": a job array through submitit: SLURM where `sbatch` exists, else its local executor
  (the same code path, which the tests use). Jobs run `train_member` below.
"""

import os
import subprocess
import sys
from concurrent import futures

import ml_collections

from genimg_jax import families
from genimg_jax.core.errors import ConfigError
from genimg_jax.runtime import setup as runtime_setup
from genimg_jax.sweeps import spec as sweep
from genimg_jax.training import loop as trainer

LAUNCHERS = ("inprocess", "local", "submitit")


def override_flags(overrides: sweep.Overrides) -> list[str]:
    """{"model.beta": 4.0} -> ["--config.model.beta=4.0"]."""
    return [f"--config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in overrides.items()]


def pending(
    config_path: str, workdir: str, member: int | None = None, overrides: sweep.Overrides = None
) -> list[sweep.Member]:
    """The members to run: all (or the one with index `member`) that have not finished."""
    base, found = sweep.load(config_path, overrides)
    if member is not None:
        if not 0 <= member < len(found):
            raise ConfigError(
                f"--member {member} does not exist: the sweep has {len(found)} "
                f"members, 0..{len(found) - 1}"
            )
        found = [found[member]]
    return [
        m
        for m in found
        if not sweep.is_finished(
            sweep.member_dir(workdir, m), sweep.apply(base, m.overrides).train.steps
        )
    ]


def train_member(
    config_path: str, workdir: str, index: int, overrides: sweep.Overrides = None
) -> str:
    """Trains member `index` of the sweep (every member taking `overrides`) in its folder, in
    this process; returns the folder."""
    base, found = sweep.load(config_path, overrides)
    member = found[index]
    folder = sweep.member_dir(workdir, member)
    trainer.train_and_evaluate(sweep.apply(base, member.overrides), folder)
    return folder


def _train_member_in_job(
    config_path: str, workdir: str, index: int, overrides: sweep.Overrides
) -> str:
    """`train_member` in a fresh job process, with the runtime setup `genimg train` applies."""
    base, found = sweep.load(config_path, overrides)
    runtime_setup.setup_runtime(sweep.apply(base, found[index].overrides))
    return train_member(config_path, workdir, index, overrides)


def train_vectorized(
    base: ml_collections.ConfigDict, workdir: str, members: list[sweep.Member], mode: str = "auto"
) -> None:
    """Trains `members` of a sweep, each into its folder under `workdir`: the members that
    differ only in hyperparameters (`state.static_key`) as one program (`programs.for_members`
    in `mode`), such groups one after another in sweep order (a study's methods)."""
    groups: dict[str, list[tuple]] = {}
    for m in members:
        config = sweep.apply(base, m.overrides)
        groups.setdefault(families.static_key(config), []).append((config, m))
    for group in groups.values():
        trainer.train(
            [config for config, _ in group],
            [sweep.member_dir(workdir, m) for _, m in group],
            mode,
        )


def _train_in_subprocess(
    config_path: str, workdir: str, member: sweep.Member, overrides: sweep.Overrides
) -> None:
    folder = sweep.member_dir(workdir, member)
    argv = [
        sys.executable,
        "-m",
        "genimg_jax.cli.main",
        "train",
        "--config",
        config_path,
        "--workdir",
        folder,
        *override_flags({**overrides, **member.overrides}),
    ]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.log"), "a") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise RuntimeError(
            f"member {member.name} failed (exit {done.returncode}); see "
            f"{os.path.join(folder, 'train.log')}"
        )


def default_workers() -> int:
    """Worker processes for the local launcher: one per two cores (XLA uses several threads)."""
    return max(1, (os.cpu_count() or 2) // 2)


def run(
    config_path: str,
    workdir: str,
    *,
    member: int | None = None,
    launcher: str = "inprocess",
    workers: int = 0,
    vectorize: bool = False,
    vectorize_mode: str = "auto",
    overrides: sweep.Overrides | None = None,
) -> list[sweep.Member]:
    """Runs the sweep of `config_path` (`path.py[:arg]` with `get_sweep`) into `workdir`, every
    member with `overrides` (the command line's `--config.FIELD=VALUE`); returns the members
    that were run. `vectorize`: the pending members train as one program (`train.programs`)."""
    overrides = dict(overrides or {})
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher={launcher!r}; use one of {list(LAUNCHERS)}")
    path, arg = sweep.split_config_arg(config_path)
    config_path = os.path.abspath(path) + (f":{arg}" if arg else "")  # workers may cd elsewhere
    base, everyone = sweep.load(config_path, overrides)
    os.makedirs(workdir, exist_ok=True)
    sweep.write_manifest(workdir, config_path, everyone, overrides)
    todo = pending(config_path, workdir, member, overrides)
    if vectorize:
        if launcher != "inprocess":
            raise ConfigError("--vectorize trains the members in this process; drop --launcher")
        train_vectorized(base, workdir, todo, vectorize_mode)
    elif launcher == "inprocess":
        for m in todo:
            train_member(config_path, workdir, m.index, overrides)
    elif launcher == "local":
        with futures.ThreadPoolExecutor(workers or default_workers()) as pool:
            jobs = [
                pool.submit(_train_in_subprocess, config_path, workdir, m, overrides) for m in todo
            ]
            for job in jobs:
                job.result()
    else:
        _submitit(config_path, workdir, todo, workers, overrides)
    return todo


def _submitit(
    config_path: str,
    workdir: str,
    todo: list[sweep.Member],
    workers: int,
    overrides: sweep.Overrides,
) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit", "%j"))
    executor.update_parameters(timeout_min=24 * 60, slurm_array_parallelism=workers or 64)
    jobs = executor.map_array(
        _train_member_in_job,
        [config_path] * len(todo),
        [workdir] * len(todo),
        [m.index for m in todo],
        [overrides] * len(todo),
    )
    for job in jobs:
        job.result()  # re-raises a member's failure with its traceback
