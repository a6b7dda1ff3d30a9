"""Data parallelism: results do not depend on the device count, the strategy (jit or pmap) or
the number of processes; bad device set-ups fail before compiling."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, load_config, resume_copy

from genimg_jax import families
from genimg_jax.core import collectives
from genimg_jax.runtime import parallel
from genimg_jax.runtime import setup as runtime_setup
from genimg_jax.sweeps import run as sweep_run
from genimg_jax.sweeps import spec as sweep
from genimg_jax.training import loop as trainer
from genimg_jax.training import tracker
from genimg_jax.training.checkpoint import Checkpoints

FAMILIES = ["dcgan_mnist", "vae_mnist"]
BETA_QUICK = os.path.join(REPO, "configs", "beta_vae_shapes.py:quick")  # 2 betas x 2 seeds


def _config(name: str, strategy: str = "jit", num_devices: int = 0, steps: int = 20):
    config = load_config(name)
    config.parallel.strategy = strategy
    config.parallel.num_devices = num_devices
    config.train.steps = steps
    config.train.checkpoint_every = 10
    config.eval.every = steps
    if "g_lr" in config.train:  # the unconditional DCGAN at learning rates 2e-4: at the main
        # job's 4e-4, or with its class embedding, Adam carries the devices' other reduction
        # order past 1e-5 in 20 steps (normalised near-zero gradients: 4e-9 after step 1,
        # 1e-7 after 2, 8e-5 after 5 in a BatchNorm bias); tests/test_conditional.py checks
        # the conditional step under pmap in one step
        config.train.g_lr = config.train.d_lr = 2e-4
        config.model.num_classes = 0
    return config


def _params(state):
    """The trained weights of every network in a state, as NumPy."""
    nets = [state.g, state.d] if hasattr(state, "g") else [state]
    return jax.device_get([(n.params, n.batch_stats, n.ema_params) for n in nets])


# How far apart two runs of one float32 program may end when they split their sums otherwise
# (over 1, 2, 4 or 8 devices, around vmapped members, and by the CPU: its vector width and
# thread count decide how XLA splits a reduction, so an AVX2 and an AVX-512 machine differ):
# they differ by rounding alone, and a bound on that, per weight array, is
# - a sum of n float32 terms, regrouped, moves by up to about log2(n)·(EPS32/2)·Σ|terms|
#   (tree-shaped reductions), i.e. log2(n)·(EPS32/2)·κ of the sum, κ = Σ|terms|/|sum| its
#   cancellation;
# - Adam's update m̂/(√v̂ + ε) passes a gradient's relative error on at most about doubled (once
#   through m, once through √v), and the weights' error after T steps is the sum of the T
#   updates' errors, carried forward by networks that a test's few small steps barely change;
# so an array's error, relative to its norm, is at most about T·EPS32·G with the growth factor
# G = log2(n)·κ: n ≤ 4096 (the longest sums that are split otherwise, a convolution's
# batch·height·width) and κ ≤ 8 allowed give G = 12·8 ≈ 100. That is an allowance, not a
# proof; measured on this project's AMD EPYC (2026-12-06, XLA's AVX-512 code and
# `--xla_cpu_max_isa=AVX2`'s), the worst array of this file's runs had 0.6·EPS32 per step (8e-7
# after 12 steps, a vmapped member's convolution kernel), ~180x under the bound, and the bugs the
# check must catch 250x to 10^4x over it (their worst array): a vmapped member trained with
# another's β, 1.4; no gradient mean across devices, 0.7; a psum in place of the pmean
# (gradients x8, which Adam all but undoes), 0.06.
# There is no elementwise check: Adam normalises each coordinate, so one whose gradient is near
# zero at some step turns rounding noise into a step of up to the learning rate, whatever the
# weight's value; such an element's relative error depends on the CPU (1.6e-3 on an AVX2 EPYC in
# the vmapped sweep below, issue #32), not on the code.
EPS32 = float(np.finfo(np.float32).eps)  # 2⁻²³
GROWTH = 100  # G above


def _assert_close(a, b):
    """Every weight array of state `a` within T·GROWTH·EPS32 of state `b`'s, relative to the
    array's norm, T the steps `b` trained (see above); a failure names the worst array."""
    steps = max(int(b.step), 1)
    rtol = steps * GROWTH * EPS32
    leaves, _ = jax.tree_util.tree_flatten_with_path(_params(b))
    errors = {}
    for (path, y), x in zip(leaves, jax.tree.leaves(_params(a)), strict=True):
        y = np.asarray(y, np.float64)
        error = np.linalg.norm(np.asarray(x, np.float64) - y) / max(np.linalg.norm(y), 1e-30)
        errors[f"{jax.tree_util.keystr(path)} {y.shape}"] = error
    worst = max(errors, key=errors.get)
    assert errors[worst] <= rtol, (
        f"relative error {errors[worst]:.2e} > {rtol:.1e} ({steps} steps) in {worst}"
    )


def test_eight_host_devices_are_available():
    assert jax.device_count() == 8  # conftest sets XLA_FLAGS before JAX starts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`runs(name, strategy, num_devices)`: `_config`'s 20-step run (checkpoints at 10 and 20),
    trained once per module: (workdir, final state)."""
    done = {}

    def run(name: str, strategy: str, num_devices: int):
        key = (name, strategy, num_devices)
        if key not in done:
            workdir = str(tmp_path_factory.mktemp(f"{name}_{strategy}_{num_devices}"))
            config = _config(name, strategy, num_devices)
            done[key] = workdir, trainer.train_and_evaluate(config, workdir)
        return done[key]

    return run


@pytest.fixture(scope="module", params=FAMILIES)
def one_device_run(request, runs):
    return request.param, runs(request.param, "jit", 1)


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_eight_devices_match_one_device(one_device_run, runs, strategy):
    name, (_, reference) = one_device_run
    _, state = runs(name, strategy, 8)
    assert int(state.step) == 20
    _assert_close(state, reference)


def test_checkpoint_moves_between_device_counts(one_device_run, runs, tmp_path):
    """Checkpointed on 8 devices, resumed on 1, and the other way; both end like a 1-device run.
    The checkpoints: step 10 of the 20-step runs on 8 devices (jit) and on 1 device, each copied
    alone into a fresh workdir."""
    name, (_, reference) = one_device_run
    for first, second in [(8, 1), (1, 8)]:
        saved_in, _ = runs(name, "jit", first)
        workdir = tmp_path / f"{first}to{second}"
        state, logged = resume_copy(saved_in, 10, workdir, _config(name, num_devices=second))
        assert int(state.step) == 20
        assert logged[0] > 10  # it trained steps 11 to 20 only
        _assert_close(state, reference)


@pytest.fixture(scope="module")
def solo_one_device_members(tmp_path_factory):
    """The quick β-VAE sweep's four members, each trained alone on one device (evaluated and
    saved at the end only: the test compares their final states)."""
    base, members = sweep.load(BETA_QUICK)
    states = {}
    for m in members:
        config = sweep.apply(base, m.overrides)
        config.parallel.num_devices = 1
        config.train.checkpoint_every = config.eval.every = config.train.steps
        states[m.name] = trainer.train_and_evaluate(config, str(tmp_path_factory.mktemp(m.name)))
    return states


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_four_vectorized_members_on_eight_devices_end_like_their_solo_one_device_runs(
    mode, solo_one_device_members, tmp_path, capsys
):
    """sequential: each member data parallel over the 8 devices in turn; vmap: one program on a
    4 x 2 mesh (members x data). Stopped at step 6 and resumed, member by member."""
    base, members = sweep.load(BETA_QUICK)
    assert jax.device_count() == 8 and len(members) == 4
    half = sweep.apply(base, {"train.steps": 6})
    sweep_run.train_vectorized(half, str(tmp_path), members, mode)
    sweep_run.train_vectorized(base, str(tmp_path), members, mode)  # each resumes at step 6
    captured = capsys.readouterr()
    assert captured.out.count("compiled the training step in") == 2
    assert "4 members" in captured.err  # one progress bar for the program
    for m in members:
        folder = tmp_path / m.name
        config = sweep.apply(base, m.overrides)
        restored = Checkpoints(str(folder), 3).restore(
            families.abstract_initial_state(config, parallel.make_mesh())
        )
        assert int(restored.step) == 12
        _assert_close(restored, solo_one_device_members[m.name])
        with open(folder / "summary.json") as f:
            summary = json.load(f)
        assert summary["step"] == 12 and summary["compile_sec"] > 0
        with open(folder / "metrics.jsonl") as f:
            assert [json.loads(line)["step"] for line in f] == [4, 6, 8, 12]  # 6: the end then


def test_batch_not_divisible_by_devices_fails_before_compiling(tmp_path):
    config = _config("vae_mnist")
    config.train.batch_size = 12
    with pytest.raises(parallel.ParallelError, match="batch_size=12 is not divisible by the 8"):
        trainer.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_more_devices_than_exist_fails_clearly(tmp_path):
    with pytest.raises(parallel.ParallelError, match="num_devices=16 but only 8"):
        trainer.train_and_evaluate(_config("vae_mnist", num_devices=16), str(tmp_path))


def test_latents_do_not_depend_on_the_device_count():
    """Each device's rows are its slice of the global draw: the random bits bitwise; the normal
    draws made from them to float rounding (XLA:CPU's older emitters, which the suite compiles
    with, round erf_inv fused with the slice in the last bit; the default emitters do not)."""
    rng = jax.random.PRNGKey(3)
    for draw, exact in (
        (lambda k, n: jax.random.bits(k, (n, 4)), True),
        (lambda k, n: jax.random.normal(k, (n, 4)), False),
    ):
        whole = jax.jit(lambda d=draw: collectives.global_rows(d, rng, 8, None))()
        rows = jax.pmap(
            lambda _, d=draw: collectives.global_rows(d, rng, 2, "data"),
            axis_name="data",
            devices=jax.devices()[:4],
        )(np.zeros(4))
        if exact:
            np.testing.assert_array_equal(np.concatenate(list(rows)), whole)
        else:
            np.testing.assert_allclose(np.concatenate(list(rows)), whole, rtol=4 * EPS32, atol=0)


def test_two_processes_match_one_process_and_their_checkpoint_restores(runs, tmp_path):
    """launch/local.sh: 2 processes x 2 CPU devices over 127.0.0.1 == 1 process (the 1-device
    run that the 8-device runs above match)."""
    name = "dcgan_mnist"
    workdir = str(tmp_path / "two_processes")
    env = dict(
        os.environ,
        PROCESSES="2",
        DEVICES="2",
        # conftest's flags (its compile settings: programs compile as the in-process run's do)
        # without its device count: local.sh sets DEVICES per process
        XLA_FLAGS=re.sub(
            r"--xla_force_host_platform_device_count=\d+", "", os.environ["XLA_FLAGS"]
        ),
        GENIMG=os.path.join(os.path.dirname(sys.executable), "genimg"),
    )
    env.pop("PORT", None)  # local.sh picks a free port
    overrides = [
        "--config.train.steps=20",
        "--config.train.checkpoint_every=20",  # the end's, restored below
        "--config.eval.every=20",
        "--config.eval.scores=True",  # both processes score; together they save the best
        "--config.eval.examples=32",
        "--config.eval.classifier_steps=100",  # not 600: the feature net is not under test
        "--config.train.g_lr=2e-4",  # as `_config`'s reference run
        "--config.train.d_lr=2e-4",
        "--config.model.num_classes=0",
    ]
    config_file = os.path.join(REPO, "configs", f"{name}.py:quick")
    run = subprocess.run(
        [os.path.join(REPO, "launch", "local.sh"), config_file, workdir, *overrides],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    _, reference = runs(name, "jit", 1)
    config = _config(name, num_devices=1)
    restored = Checkpoints(workdir, 3).restore(
        families.abstract_initial_state(config, parallel.make_mesh(1))
    )
    assert int(restored.step) == 20
    _assert_close(restored, reference)
    with open(os.path.join(workdir, "run_record.json")) as f:
        record = json.load(f)
    assert record["process_count"] == 2 and len(record["devices"]) == 4
    # Only process 0 wrote logs and samples.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows if "d_loss" in r] == [4, 8, 12, 16, 20]
    (scored,) = [r for r in rows if "eval/fid" in r]
    assert os.listdir(os.path.join(workdir, "checkpoints_best")) == ["20"]
    config.eval.examples, config.eval.classifier_steps = 32, 100  # as the processes scored
    again = tracker.make_scorer(config)(restored)  # one process scoring the restored state
    assert again["fid"] == pytest.approx(scored["eval/fid"], rel=1e-4)


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_compute_keeps_float32_params_and_tracks_float32(name, tmp_path):
    trainer.train_and_evaluate(_config(name, steps=6), str(tmp_path / "f32"))
    config = _config(name, steps=6)
    config.train.compute_dtype = "bfloat16"
    bf16 = trainer.train_and_evaluate(config, str(tmp_path / "bf16"))
    leaves = jax.tree.leaves(_params(bf16)) + jax.tree.leaves(
        jax.device_get(
            [n.opt_state for n in ([bf16.g, bf16.d] if name == "dcgan_mnist" else [bf16])]
        )
    )
    assert all(leaf.dtype in (np.float32, np.int32) for leaf in leaves)
    rows = {}
    for run in ("f32", "bf16"):
        with open(tmp_path / run / "metrics.jsonl") as f:
            rows[run] = [json.loads(line) for line in f]
    assert [r["step"] for r in rows["bf16"]] == [r["step"] for r in rows["f32"]]
    for low, full in zip(rows["bf16"], rows["f32"], strict=True):  # bf16: ~3 significant digits
        for key in ("d_loss", "g_loss") if name == "dcgan_mnist" else ("loss", "kl"):
            assert abs(low[key] - full[key]) <= 0.02 * abs(full[key]) + 1e-3, (key, low, full)


def test_deterministic_flag_is_set_for_gpus_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    runtime_setup.set_deterministic_gpu_ops(True)
    assert os.environ["XLA_FLAGS"].endswith("--xla_gpu_deterministic_ops=true")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    runtime_setup.set_deterministic_gpu_ops(True)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
    monkeypatch.delenv("XLA_FLAGS")
    runtime_setup.set_deterministic_gpu_ops(False)
    assert "XLA_FLAGS" not in os.environ
