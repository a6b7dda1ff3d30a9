"""Data parallelism: results do not depend on the device count, the strategy (jit or pmap) or
the number of processes; bad device set-ups fail before compiling."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, load_config
from genimg_jax import parallel, trainer
from genimg_jax.checkpoint import Checkpoints

FAMILIES = ["dcgan_mnist", "vae_mnist"]


def _config(name: str, strategy: str = "jit", num_devices: int = 0, steps: int = 20):
    config = load_config(name)
    config.parallel.strategy = strategy
    config.parallel.num_devices = num_devices
    config.train.steps = steps
    config.train.checkpoint_every = 10
    config.eval.every = steps
    return config


def _params(state):
    """The trained weights of every network in a state, as NumPy."""
    nets = [state.g, state.d] if hasattr(state, "g") else [state]
    return jax.device_get([(n.params, n.batch_stats, n.ema_params) for n in nets])


def _assert_close(a, b, rtol=1e-5):
    """Every weight array equal within `rtol`, relative to the array's norm (reductions over
    devices sum in another order, so single near-zero entries may differ in the last bits)."""
    for x, y in zip(jax.tree.leaves(_params(a)), jax.tree.leaves(_params(b)), strict=True):
        error = np.linalg.norm(np.asarray(x, np.float64) - y) / max(np.linalg.norm(y), 1e-30)
        assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e} in a {x.shape} array"
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5 * np.max(np.abs(y)))


def test_eight_host_devices_are_available():
    assert jax.device_count() == 8  # conftest sets XLA_FLAGS before JAX starts


@pytest.fixture(scope="module", params=FAMILIES)
def one_device_run(request, tmp_path_factory):
    config = _config(request.param, num_devices=1)
    state = trainer.train_and_evaluate(config, str(tmp_path_factory.mktemp("one")))
    return request.param, state


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_eight_devices_match_one_device(one_device_run, strategy, tmp_path):
    name, reference = one_device_run
    state = trainer.train_and_evaluate(_config(name, strategy, 8), str(tmp_path))
    assert int(state.step) == 20
    _assert_close(state, reference)


def test_checkpoint_moves_between_device_counts(one_device_run, tmp_path):
    """Checkpointed on 8 devices, resumed on 1, and the other way; both end like a 1-device run."""
    name, reference = one_device_run
    for first, second in [(8, 1), (1, 8)]:
        workdir = str(tmp_path / f"{first}to{second}")
        trainer.train_and_evaluate(_config(name, num_devices=first, steps=10), workdir)
        state = trainer.train_and_evaluate(_config(name, num_devices=second), workdir)
        assert int(state.step) == 20
        _assert_close(state, reference)


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
    rng = jax.random.PRNGKey(3)
    whole = parallel.normal_rows(rng, 8, (4,), None)
    rows = jax.pmap(
        lambda _: parallel.normal_rows(rng, 2, (4,), "data"),
        axis_name="data",
        devices=jax.devices()[:4],
    )(np.zeros(4))
    np.testing.assert_array_equal(np.concatenate(list(rows)), whole)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_and_their_checkpoint_restores(tmp_path):
    """2 processes x 2 CPU devices over 127.0.0.1 == 1 process x 4 devices."""
    name = "dcgan_mnist"
    port = _free_port()
    workdir = str(tmp_path / "two_processes")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    args = [
        sys.executable,
        "-m",
        "genimg_jax.main",
        "train",
        "--config",
        os.path.join(REPO, "configs", f"{name}.py:quick"),
        "--workdir",
        workdir,
        "--config.train.steps=20",
        "--config.train.checkpoint_every=10",
        "--config.eval.every=20",
        f"--config.parallel.coordinator_address=127.0.0.1:{port}",
        "--config.parallel.num_processes=2",
    ]
    procs = [
        subprocess.Popen(
            args + [f"--config.parallel.process_id={i}"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    reference = trainer.train_and_evaluate(_config(name, num_devices=4), str(tmp_path / "one"))
    config = _config(name, num_devices=1)
    restored = Checkpoints(workdir, 3).restore(trainer.initial_state(config, parallel.make_mesh(1)))
    assert int(restored.step) == 20
    _assert_close(restored, reference)
    with open(os.path.join(workdir, "run_record.json")) as f:
        record = json.load(f)
    assert record["process_count"] == 2 and len(record["devices"]) == 4
    # Only process 0 wrote logs and samples.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [int(line.split('"step": ')[1].split(",")[0]) for line in f] == [4, 8, 12, 16, 20]
