"""Faults that really happen, done for real: signals to a training process, SIGKILL during saves,
a full and a read-only file system, damaged checkpoints and data, two runs on one workdir,
divergence. Each must give a clear message and lose nothing that was saved."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, load_config

from genimg_jax import families
from genimg_jax.cli.main import main as cli
from genimg_jax.core.errors import CheckpointError, DivergenceError, WorkdirError
from genimg_jax.data import pipeline
from genimg_jax.runtime import parallel
from genimg_jax.training import loop as trainer
from genimg_jax.training.checkpoint import Checkpoints
from genimg_jax.training.outputs import MetricWriter

STEPS = 300  # long enough that a signal sent after the first log lands mid-run
OVERRIDES = {"parallel.num_devices": 1, "train.log_every": 10, "train.checkpoint_every": 5}
ONE_SAVE = {"train.checkpoint_every": STEPS}  # for runs that are compared, not stopped


def _config(**overrides):
    config = load_config("vae_mnist")
    for field, value in {**OVERRIDES, "train.steps": STEPS, **overrides}.items():
        section, key = field.split(".")
        config[section][key] = value
    return config


def _argv(workdir, **overrides) -> list[str]:
    flags = [
        f"--config.{k}={v}" for k, v in {**OVERRIDES, "train.steps": STEPS, **overrides}.items()
    ]
    return [
        sys.executable,
        "-m",
        "genimg_jax.cli.main",
        "train",
        "--config",
        os.path.join(REPO, "configs", "vae_mnist.py:quick"),
        "--workdir",
        str(workdir),
        *flags,
    ]


def _spawn(workdir, **overrides) -> subprocess.Popen:
    return subprocess.Popen(
        _argv(workdir, **overrides),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"training exited early: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, "timed out waiting for the training process"
        time.sleep(0.02)


def _metric_rows(workdir) -> int:
    path = os.path.join(workdir, "metrics.jsonl")
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def _saved_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def _assert_bitwise_equal(a, b):
    a, b = jax.device_get(a), jax.device_get(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _restore(workdir, config, step=None):
    template = families.initial_state(config, parallel.make_mesh(1))
    return Checkpoints(str(workdir), 3).restore(template, step)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never stopped (checkpoints do not change the numbers)."""
    workdir = str(tmp_path_factory.mktemp("u"))
    return jax.device_get(trainer.train_and_evaluate(_config(**ONE_SAVE), workdir))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_exits_and_resume_is_bitwise_equal(signum, uninterrupted, tmp_path):
    proc = _spawn(tmp_path, **{"train.checkpoint_every": 1000})
    _wait_for(lambda: _metric_rows(tmp_path) >= 1, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"stopped by {signal.Signals(signum).name} after step" in err
    assert "Traceback" not in err
    (stopped_at,) = _saved_steps(tmp_path)  # the only checkpoint: the one the signal asked for
    assert 10 <= stopped_at < STEPS
    resumed = trainer.train_and_evaluate(_config(**ONE_SAVE), str(tmp_path))
    _assert_bitwise_equal(resumed, uninterrupted)


def test_sigkill_at_any_moment_loses_only_unsaved_steps(uninterrupted, tmp_path):
    rng = random.Random(0)
    for _ in range(3):
        before = max(_saved_steps(tmp_path), default=0)
        proc = _spawn(tmp_path, **{"train.checkpoint_every": 1})  # a save every step
        _wait_for(lambda b=before: max(_saved_steps(tmp_path), default=0) > b + 2, proc)
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.communicate()
        latest = Checkpoints(str(tmp_path), 3).latest_step()
        assert latest and latest < STEPS
        state = _restore(tmp_path, _config(), latest)  # the latest complete save reads back
        assert int(state.step) == latest
    resumed = trainer.train_and_evaluate(_config(**ONE_SAVE), str(tmp_path))
    _assert_bitwise_equal(resumed, uninterrupted)


def test_resume_drops_a_metrics_row_cut_short_and_the_rows_after_its_checkpoint(tmp_path):
    writer = MetricWriter(str(tmp_path))
    for step in (1, 2, 3, 4):
        writer.write(step, {"loss": step / 3})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 1.6')  # a kill or a full disk in the middle of a row
    resumed = MetricWriter(str(tmp_path), start_step=3)  # the run restarts from step 3
    resumed.write(4, {"loss": 0.5})
    resumed.close()
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert rows == [{"step": s, "loss": s / 3} for s in (1, 2, 3)] + [{"step": 4, "loss": 0.5}]
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", "tb"]


@contextlib.contextmanager
def _small_filesystem(path, size="16m"):
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_during_a_save_fails_clearly_and_keeps_earlier_checkpoints(tmp_path):
    with _small_filesystem(tmp_path / "fs") as fs:
        workdir = os.path.join(fs, "run")
        trainer.train_and_evaluate(_config(**{"train.steps": 6}), workdir)
        before = _saved_steps(workdir)
        saved = jax.device_get(_restore(workdir, _config(), 6))
        checkpoint_bytes = sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, files in os.walk(os.path.join(workdir, "checkpoints", "6"))
            for f in files
        )
        stats = os.statvfs(fs)
        leave = checkpoint_bytes // 3  # room for logs, not for another checkpoint
        with open(os.path.join(fs, "filler"), "wb") as f:
            f.write(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
        with pytest.raises((WorkdirError, CheckpointError), match="No space left on device"):
            trainer.train_and_evaluate(_config(**{"train.steps": 12}), workdir)
        os.remove(os.path.join(fs, "filler"))
        assert _saved_steps(workdir) == before
        _assert_bitwise_equal(_restore(workdir, _config(), 6), saved)
        state = trainer.train_and_evaluate(_config(**{"train.steps": 12}), workdir)  # space again
        assert int(state.step) == 12


def test_full_disk_when_a_resume_rewrites_the_metrics_keeps_them_and_leaves_no_partial_copy(
    tmp_path,
):
    with _small_filesystem(tmp_path / "fs", size="1m") as fs:
        writer = MetricWriter(fs)
        for step in range(1, 2001):
            writer.write(step, {"loss": step / 3})
        writer.close()
        with open(os.path.join(fs, "metrics.jsonl"), "rb") as f:
            logged = f.read()
        stats = os.statvfs(fs)
        with open(os.path.join(fs, "filler"), "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (stats.f_bavail * stats.f_frsize))  # the disk to its last block
        with pytest.raises(OSError, match="No space left on device"):
            MetricWriter(fs, start_step=1000)  # a resume from step 1000 rewrites the file
        with open(os.path.join(fs, "metrics.jsonl"), "rb") as f:
            assert f.read() == logged
        assert not os.path.exists(os.path.join(fs, "metrics.jsonl.tmp"))


def test_read_only_workdir_fails_before_training(tmp_path):
    with _small_filesystem(tmp_path / "fs") as fs:
        workdir = os.path.join(fs, "run")
        trainer.train_and_evaluate(_config(**{"train.steps": 6}), workdir)
        subprocess.run(["mount", "-o", "remount,ro", fs], check=True)
        before = _saved_steps(workdir)
        with pytest.raises(WorkdirError, match=r"cannot write to workdir .*Read-only"):
            trainer.train_and_evaluate(_config(**{"train.steps": 12}), workdir)
        assert _saved_steps(workdir) == before


def test_a_url_workdir_is_refused_instead_of_becoming_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkdirError, match="is a URL.*mount the bucket"):
        trainer.train_and_evaluate(_config(), "gs://bucket/runs/x")
    assert os.listdir(tmp_path) == []  # no folder "gs:"


def _largest_file(directory) -> str:
    files = [os.path.join(d, f) for d, _, names in os.walk(directory) for f in names]
    return max(files, key=os.path.getsize)


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    config = _config(**{"train.steps": 18, "train.checkpoint_every": 6})
    reference = trainer.train_and_evaluate(config, str(tmp_path / "reference"))
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(_config(**{"train.steps": 12, "train.checkpoint_every": 6}), workdir)
    victim = _largest_file(os.path.join(workdir, "checkpoints", "12"))
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    resumed = trainer.train_and_evaluate(config, workdir)
    assert "checkpoint step 12 is unreadable" in capsys.readouterr().err
    assert os.path.isdir(os.path.join(workdir, "checkpoints_corrupt", "12"))
    _assert_bitwise_equal(resumed, reference)  # redone from step 6, exactly


def test_when_no_checkpoint_is_readable_the_error_names_them(tmp_path):
    workdir = str(tmp_path)
    trainer.train_and_evaluate(_config(**{"train.steps": 6, "train.checkpoint_every": 6}), workdir)
    with open(_largest_file(os.path.join(workdir, "checkpoints", "6")), "r+b") as f:
        f.truncate(10)
    with pytest.raises(CheckpointError, match="no readable checkpoint .*step 6"):
        trainer.train_and_evaluate(_config(**{"train.steps": 12}), workdir)


def test_second_run_on_a_live_workdir_fails_and_a_dead_runs_lock_is_taken_over(tmp_path):
    proc = _spawn(tmp_path, **{"train.steps": 10**6, "train.checkpoint_every": 10**6})
    try:
        _wait_for(lambda: _metric_rows(tmp_path) >= 1, proc)
        with pytest.raises(WorkdirError, match=f"in use by another run \\(pid {proc.pid} on "):
            trainer.train_and_evaluate(_config(**{"train.steps": 6}), str(tmp_path))
    finally:
        proc.kill()
        proc.communicate()
    state = trainer.train_and_evaluate(_config(**{"train.steps": 6}), str(tmp_path))
    assert int(state.step) == 6


ABSURD = {"train.lr": 1e12, "train.checkpoint_every": 1, "train.steps": 20}


def test_divergence_stops_naming_the_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    with pytest.raises(DivergenceError, match=r"non-finite .* at step (\d+)") as info:
        trainer.train_and_evaluate(_config(**ABSURD), str(tmp_path))
    bad_step = int(info.value.args[0].split(" at step ")[1].split(".")[0])
    assert "VAE" in str(info.value) or "loss" in str(info.value)
    assert _saved_steps(tmp_path)[-1] == bad_step - 1  # every finite step was saved, no more
    kept = _restore(tmp_path, _config(), bad_step - 1)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(kept.params)))


def test_skip_nonfinite_skips_and_counts_bad_updates(tmp_path):
    state = trainer.train_and_evaluate(
        _config(**ABSURD, **{"train.skip_nonfinite": True}), str(tmp_path)
    )
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(state.params)))
    with open(tmp_path / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["step"] == 20 and last["skipped"] > 0


def test_resume_with_another_model_lists_what_differs(tmp_path, capsys):
    trainer.train_and_evaluate(_config(**{"train.steps": 6}), str(tmp_path))
    with pytest.raises(CheckpointError, match="model.width: 8 -> 16") as info:
        trainer.train_and_evaluate(_config(**{"model.width": 16}), str(tmp_path))
    assert "encoder" in str(info.value) and "another --workdir" in str(info.value)
    argv = [
        "genimg",
        "sample",
        "--config",
        os.path.join(REPO, "configs", "vae_mnist.py:quick"),
        "--workdir",
        str(tmp_path),
        "--config.model.width=16",
    ]
    assert cli(argv) == 1
    assert "does not fit this config's model" in capsys.readouterr().err


def test_damaged_data_set_says_how_to_rebuild_it(tmp_path):
    pipeline.prepare("bundled_mnist", str(tmp_path))
    (record,) = [
        os.path.join(d, f)
        for d, _, fs in os.walk(tmp_path)
        for f in fs
        if "train.array_record" in f
    ]
    with open(record, "r+b") as f:
        f.truncate(os.path.getsize(record) // 2)
    with pytest.raises(pipeline.DataError, match="cannot be read.*genimg prepare"):
        pipeline.load_split("bundled_mnist", "train", str(tmp_path))
