"""End to end: the loop trains every shipped config, writes what it promises, resumes exactly,
and reproduces bitwise in a fresh process through the CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from PIL import Image

from genimg_jax import families
from genimg_jax.cli import sample
from genimg_jax.cli.main import main as cli
from genimg_jax.runtime import parallel
from genimg_jax.training import loop as trainer
from genimg_jax.training import member
from genimg_jax.training import outputs as log_lib
from genimg_jax.training.checkpoint import Checkpoints

FAMILIES = ["dcgan_mnist", "vae_mnist"]


def _assert_trees_bitwise_equal(a, b):
    a, b = (
        jax.tree.leaves_with_path(jax.device_get(a)),
        jax.tree.leaves_with_path(jax.device_get(b)),
    )
    assert [path for path, _ in a] == [path for path, _ in b]
    for (path, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def _rows(workdir, steps=(4, 8, 12)):
    """The metric rows at `steps`, without wall-clock fields."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [
        {k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows if r["step"] in steps
    ]


@pytest.fixture(scope="module", params=FAMILIES)
def uninterrupted(request, tmp_path_factory):
    """A 12-step quick run, trained once per family for the whole module."""
    workdir = str(tmp_path_factory.mktemp(request.param))
    config = load_config(request.param)
    state = trainer.train_and_evaluate(config, workdir)
    return request.param, config, workdir, jax.device_get(state)


def test_run_writes_checkpoints_metrics_samples_and_record(uninterrupted):
    name, config, workdir, _ = uninterrupted
    assert Checkpoints(workdir, 3).manager.all_steps() == [6, 12]
    rows = _rows(workdir, steps=range(100))
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert all(np.isfinite(v) for r in rows for v in r.values())
    samples = sorted(os.listdir(os.path.join(workdir, "samples")))
    expected = ["samples"] if name.startswith("dcgan") else ["prior_samples", "reconstructions"]
    assert samples == sorted(f"{k}_{s:06d}.png" for k in expected for s in (6, 12))
    image = Image.open(os.path.join(workdir, "samples", f"{expected[0]}_000012.png"))
    side = 4 * (config.data.image_size + 1) + 1  # 16 samples -> 4x4 tiles with 1-px borders
    assert image.size == (side, side)
    with open(os.path.join(workdir, "run_record.json")) as f:
        record = json.load(f)
    assert record["versions"]["jax"] == jax.__version__ and "git_commit" in record
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    assert saved["model"]["family"] == config.model.family
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tb")))


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_resume_matches_uninterrupted_run(uninterrupted, tmp_path):
    name, _, workdir, final = uninterrupted
    half = load_config(name)
    half.train.steps = 6  # stop at the first checkpoint...
    trainer.train_and_evaluate(half, str(tmp_path))
    resumed = trainer.train_and_evaluate(load_config(name), str(tmp_path))  # ...then go on
    _assert_trees_bitwise_equal(resumed, final)
    assert _rows(str(tmp_path)) == _rows(workdir)


def test_a_checkpoint_is_restored_without_initialising_the_networks(uninterrupted, monkeypatch):
    """Restoring reads the checkpoint into the state's abstract shapes; only a fresh start
    initialises (and so pays for running every layer's initialiser)."""
    _, config, workdir, final = uninterrupted

    def initialised(*args):
        raise AssertionError("initial_state computed for a restore")

    monkeypatch.setattr(families, "initial_state", initialised)
    _assert_trees_bitwise_equal(member.restore(config, workdir), final)


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_same_seed_in_a_fresh_process_is_bitwise_identical(uninterrupted, tmp_path):
    """...also when that process loads its training step from the compilation cache that the
    in-process run filled (the suite shares one, tests/conftest.py)."""
    name, config, workdir, final = uninterrupted
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genimg_jax.cli.main",
            "train",
            "--config",
            os.path.join(REPO, "configs", f"{name}.py:quick"),
            "--workdir",
            str(tmp_path),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "compiled the training step in" in done.stdout
    assert "(cached)" in done.stdout, done.stdout[-1000:]
    restored = Checkpoints(str(tmp_path), 3).restore(
        families.initial_state(config, parallel.make_mesh())
    )
    _assert_trees_bitwise_equal(restored, final)
    assert _rows(str(tmp_path)) == _rows(workdir)


def test_sample_command_draws_a_grid_from_the_checkpoint(uninterrupted, tmp_path):
    _, config, workdir, _ = uninterrupted
    out = str(tmp_path / "grid.png")
    assert cli(["genimg", "sample", "--workdir", workdir, "--num", "9", "--out", out]) == 0
    side = 3 * (config.data.image_size + 1) + 1
    assert Image.open(out).size == (side, side)


def test_samples_export_as_npz_and_png_folder_for_external_fid_tools(uninterrupted, tmp_path):
    """Drawn in batches (here 5, the last one padded), they are `draw`'s images as uint8."""
    _, config, workdir, _ = uninterrupted
    expected = log_lib.to_uint8(
        sample.draw(config, workdir, 12, seed=3), families.of(config).value_range
    )
    npz = sample.export(config, workdir, 12, str(tmp_path / "s.npz"), "npz", seed=3, batch=5)
    with np.load(npz) as f:
        images = f["images"]
    assert images.dtype == np.uint8 and images.shape == expected.shape
    assert np.abs(images.astype(int) - expected).max() <= 1  # batch shapes round alike, or by 1
    folder = tmp_path / "png"
    argv = ["genimg", "sample", "--workdir", workdir, "--num", "12", "--seed", "3"]
    assert cli([*argv, "--format", "png-dir", "--out", str(folder)]) == 0
    files = sorted(os.listdir(folder))
    assert files == [f"{i:06d}.png" for i in range(12)]
    first = np.asarray(Image.open(folder / files[0]))
    assert np.abs(first.reshape(expected[0].shape).astype(int) - expected[0]).max() <= 1


def test_beta_vae_on_shapes_trains(tmp_path):
    state = trainer.train_and_evaluate(load_config("beta_vae_shapes"), str(tmp_path))
    assert int(state.step) == 12 and float(state.hparams["beta"]) == 4.0
    assert all(np.isfinite(r["loss"]) for r in _rows(str(tmp_path)))


@pytest.mark.parametrize(
    "override,expected",
    [
        ("--config.model.bta=4.0", "bta"),
        ("--config.model.beta=abc", "config.model.beta"),
    ],
)
def test_bad_override_fails_before_training_naming_the_field(override, expected, tmp_path, capsys):
    argv = [
        "genimg",
        "train",
        "--config",
        os.path.join(REPO, "configs", "vae_mnist.py:quick"),
        "--workdir",
        str(tmp_path),
        override,
    ]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "checkpoints")


def test_sample_without_checkpoint_says_train_first(tmp_path, capsys):
    argv = [
        "genimg",
        "sample",
        "--config",
        os.path.join(REPO, "configs", "vae_mnist.py:quick"),
        "--workdir",
        str(tmp_path),
    ]
    assert cli(argv) == 1
    assert "genimg train" in capsys.readouterr().err
