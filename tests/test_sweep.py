"""Running sweeps end to end: in-process (one compilation for all members), by member index,
resuming only what is missing, through a local process pool and through submitit."""

import json
import os

import pytest
from conftest import REPO

from genimg_jax.cli.main import main as cli
from genimg_jax.core.errors import ConfigError
from genimg_jax.sweeps import report
from genimg_jax.sweeps import run as sweep_run
from genimg_jax.sweeps import spec as sweep
from genimg_jax.training import loop as trainer
from genimg_jax.training import programs

BETA_QUICK = os.path.join(REPO, "configs", "beta_vae_shapes.py:quick")  # 2 betas x 2 seeds
LR_QUICK = os.path.join(REPO, "configs", "vae_mnist.py:quick")  # 2 learning rates
# every member on one device (multi-device members: test_parallel.py), given as the command
# line's overrides are
ONE = {"parallel.num_devices": 1}
ONE_FLAGS = ["--config.parallel.num_devices=1"]
# and for the tests that never resume from the quick configs' checkpoint at step 6: one
# checkpoint per member, at its end
ONE_SAVE = {**ONE, "train.checkpoint_every": 12}


def _run(config_path: str, workdir: str, overrides=ONE, **kwargs) -> list:
    return sweep_run.run(config_path, workdir, overrides=overrides, **kwargs)


def _summary(workdir, name):
    with open(os.path.join(workdir, name, "summary.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def solo_sweep(tmp_path_factory):
    """The quick 2x2 β-VAE sweep run in-process once (one checkpoint per member), from no
    compiled step in this process: its workdir, the members it ran, and the strategies (compiled
    steps) the process then held."""
    workdir = tmp_path_factory.mktemp("solo")
    programs._STRATEGIES.clear()
    ran = _run(BETA_QUICK, str(workdir), ONE_SAVE)
    return workdir, ran, list(programs._STRATEGIES.values())


def test_a_2x2_sweep_runs_in_process_compiling_the_step_once(solo_sweep):
    tmp_path, ran, strategies = solo_sweep
    assert [m.name for m in ran] == [
        "000_beta=1_seed=0",
        "001_beta=1_seed=1",
        "002_beta=4_seed=0",
        "003_beta=4_seed=1",
    ]
    assert all(_summary(tmp_path, m.name)["step"] == 12 for m in ran)
    with open(tmp_path / "001_beta=1_seed=1" / "config.json") as f:
        saved = json.load(f)
    assert saved["model"]["beta"] == 1.0 and saved["seed"] == 1
    ((strategy),) = strategies  # one program for the four members...
    assert strategy.steps(1)._cache_size() == 1  # ...compiled once, by the first member
    first, *later = [_summary(tmp_path, m.name)["compile_sec"] for m in ran]
    assert max(later) < 0.2 * first, (first, later)
    rows = report.collect(str(tmp_path))
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert {r["overrides"]["model.beta"] for r in rows} == {1.0, 4.0}


def test_member_runs_alone_and_a_rerun_runs_only_what_is_missing(tmp_path):
    assert [m.index for m in _run(BETA_QUICK, str(tmp_path), ONE_SAVE, member=2)] == [2]
    assert sorted(os.listdir(tmp_path)) == ["002_beta=4_seed=0", "sweep.json"]
    finished_at = os.path.getmtime(tmp_path / "002_beta=4_seed=0" / "summary.json")
    assert [m.index for m in _run(BETA_QUICK, str(tmp_path), ONE_SAVE)] == [0, 1, 3]
    assert os.path.getmtime(tmp_path / "002_beta=4_seed=0" / "summary.json") == finished_at
    assert _run(BETA_QUICK, str(tmp_path), ONE_SAVE) == []  # all finished: nothing to do
    with pytest.raises(ConfigError, match="--member 9 does not exist"):
        _run(BETA_QUICK, str(tmp_path), ONE_SAVE, member=9)


@pytest.mark.parametrize("launcher", ["local", "submitit"])
def test_process_launchers_run_every_member(launcher, tmp_path):
    ran = _run(LR_QUICK, str(tmp_path), ONE_SAVE, launcher=launcher, workers=2)
    assert len(ran) == 2
    base, members = sweep.load(LR_QUICK, ONE_SAVE)
    for m in members:
        summary = _summary(tmp_path, m.name)
        assert summary["step"] == base.train.steps
        with open(tmp_path / m.name / "config.json") as f:
            assert json.load(f)["train"]["lr"] == m.overrides["train.lr"]


def test_cli_sweep_then_report(tmp_path, capsys):
    assert (
        cli(
            ["genimg", "sweep", "--config", LR_QUICK, "--workdir", str(tmp_path), *ONE_FLAGS]
            + ["--config.train.checkpoint_every=12"]  # ONE_SAVE's
        )
        == 0
    )
    assert cli(["genimg", "report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "summary.md" in out and os.path.exists(tmp_path / "report" / "loss_vs_lr.png")


def _rows(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_vectorized_sweep_matches_its_solo_runs(mode, solo_sweep, tmp_path):
    solo = solo_sweep[0]
    vectorized = tmp_path / "vectorized"
    ran = _run(BETA_QUICK, str(vectorized), vectorize=True, vectorize_mode=mode)
    assert len(ran) == 4
    for m in ran:
        a, b = _rows(solo / m.name), _rows(vectorized / m.name)
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b, strict=True):
            for key in ("loss", "recon", "kl", "grad_norm"):
                assert rb[key] == pytest.approx(ra[key], rel=1e-3, abs=1e-5), (m.name, key)
        assert _summary(vectorized, m.name)["step"] == 12
        assert sorted(os.listdir(vectorized / m.name / "samples")) == sorted(
            os.listdir(solo / m.name / "samples")
        )


def test_vectorized_sweep_resumes_members_where_they_stopped(tmp_path):
    _run(BETA_QUICK, str(tmp_path), ONE_SAVE, member=1)  # one member already finished
    ran = _run(BETA_QUICK, str(tmp_path), ONE_SAVE, vectorize=True)
    assert [m.index for m in ran] == [0, 2, 3]
    assert all(_summary(tmp_path, m.name)["step"] == 12 for m in sweep.load(BETA_QUICK, ONE)[1])


def test_one_program_refuses_members_that_differ_in_more_than_hyperparameters(tmp_path):
    base, members = sweep.load(BETA_QUICK, ONE)
    configs = [sweep.apply(base, members[0].overrides), sweep.apply(base, {"model.width": 16})]
    with pytest.raises(ConfigError, match="differ only in"):
        trainer.train(configs, [str(tmp_path / "a"), str(tmp_path / "b")], "vmap")


def test_vectorized_members_score_and_keep_their_best_like_solo_runs(tmp_path):
    base, members = sweep.load(BETA_QUICK, ONE)
    base.eval.scores = True
    base.eval.examples = 16  # the IWAE bound's decodes are the scores' cost
    members = members[:2]
    sweep_run.train_vectorized(base, str(tmp_path / "vectorized"), members, mode="sequential")
    for m in members:
        config = sweep.apply(base, m.overrides)
        trainer.train_and_evaluate(config, str(tmp_path / "solo" / m.name))
        for step in (6, 12):
            name = f"eval_{step:06d}.json"
            with open(tmp_path / "solo" / m.name / name) as f:
                solo = json.load(f)
            with open(tmp_path / "vectorized" / m.name / name) as f:
                assert json.load(f) == pytest.approx(solo, rel=1e-3)
        assert os.listdir(tmp_path / "vectorized" / m.name / "checkpoints_best") == os.listdir(
            tmp_path / "solo" / m.name / "checkpoints_best"
        )
        assert _summary(tmp_path / "vectorized", m.name)["eval"]["best_metric"] == "neg_elbo"
