"""Several steps per call of the compiled program (`train.steps_per_dispatch`), and the divergence
guard's weights check where the loop reads the guard.

k steps per call run the same steps on the same batches and keys as k calls: the same log rows,
checkpoints and grids at the same steps, and a run with k steps per call resumes bitwise. The
state agrees with k calls' to float rounding, not bitwise: XLA compiles the loop body of
`lax.scan` with other layouts for its convolutions' gradients (measured on XLA:CPU, README
"Steps per call")."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, resume_copy

from genimg_jax.core.errors import ConfigError
from genimg_jax.training import guard as guard_lib
from genimg_jax.training import loop as trainer
from genimg_jax.training import programs


def _config(k: int, steps: int = 12, **fields):
    config = load_config("vae_mnist")  # quick: log every 4, evaluate and save every 6
    config.train.steps, config.train.steps_per_dispatch = steps, k
    config.train.log_every = 2
    config.parallel.num_devices = 1
    for field, value in fields.items():
        section, key = field.split(".")
        config[section][key] = value
    return config


def _rows(workdir) -> dict[int, dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {row["step"]: row for row in map(json.loads, f)}


def _saved(workdir) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _leaves(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


def test_the_calls_cover_every_step_k_at_a_time_from_multiples_of_k():
    assert list(trainer.dispatches(0, 12, 4)) == [(0, 4), (4, 4), (8, 4)]
    # a run resumed at a step that is not a multiple (a checkpoint of a run with another k)
    assert list(trainer.dispatches(5, 12, 4)) == [(5, 1), (6, 1), (7, 1), (8, 4)]
    assert list(trainer.dispatches(0, 10, 4)) == [(0, 4), (4, 4), (8, 1), (9, 1)]
    assert list(trainer.dispatches(3, 6, 1)) == [(3, 1), (4, 1), (5, 1)]


def test_k_must_divide_the_steps_and_every_interval(tmp_path):
    with pytest.raises(ConfigError, match="train.steps_per_dispatch=4 .* positive divisor"):
        trainer.train_and_evaluate(_config(4), str(tmp_path))  # log_every=2
    assert not os.listdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The quick conv VAE for 12 steps: one step per call, two per call, and two per call
    resumed from the latter's step-6 checkpoint (copied alone into a fresh workdir)."""
    out = {}
    for name, k in (("one", 1), ("two", 2)):
        workdir = str(tmp_path_factory.mktemp(name))
        out[name] = (workdir, trainer.train_and_evaluate(_config(k), workdir))
    workdir = str(tmp_path_factory.mktemp("resumed"))
    out["resumed"] = (workdir, resume_copy(out["two"][0], 6, workdir, _config(2))[0])
    return out


def test_k_steps_per_call_log_and_save_at_the_same_steps(runs):
    (one, _), (two, _) = runs["one"], runs["two"]
    assert sorted(_rows(two)) == sorted(_rows(one)) == [2, 4, 6, 8, 10, 12]
    assert _saved(two) == _saved(one)
    assert sorted(os.listdir(os.path.join(two, "samples"))) == sorted(
        os.listdir(os.path.join(one, "samples"))
    )
    for step, row in _rows(two).items():  # each row holds its own step's metrics
        np.testing.assert_allclose(row["neg_elbo"], _rows(one)[step]["neg_elbo"], rtol=1e-4)


def test_k_steps_per_call_end_where_k_calls_do_up_to_float_rounding(runs):
    one, two = _leaves(runs["one"][1]), _leaves(runs["two"][1])
    for a, b in zip(one, two, strict=True):
        if a.dtype.kind != "f":
            np.testing.assert_array_equal(a, b)  # steps, guards, keys: exactly
            continue
        # 12 Adam steps from rounding-level differences in the gradients: each weight moves by
        # at most lr per step, so differences stay far below the update's size
        scale = max(float(np.linalg.norm(a)), 1e-12)
        assert float(np.linalg.norm(a - b)) <= 1e-4 * scale


def test_a_run_with_k_steps_per_call_resumes_bitwise(runs):
    assert sorted(_rows(runs["resumed"][0])) == [8, 10, 12]  # it trained steps 7 to 12 only
    for a, b in zip(_leaves(runs["two"][1]), _leaves(runs["resumed"][1]), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [1, 2])
def test_host_batches_on_one_cpu_device_train_bitwise_like_placed_ones(
    runs, k, tmp_path, monkeypatch
):
    """On one CPU device the jitted step places its batch itself (programs.on_one_cpu_device);
    batches placed with `jax.device_put` beforehand, as on accelerators, give the same run (its
    final state; evaluated and saved at the end only)."""
    monkeypatch.setattr(programs, "on_one_cpu_device", lambda mesh: False)
    monkeypatch.setattr(programs, "_STRATEGIES", {})  # not the runs' cached strategy
    config = _config(k, **{"train.checkpoint_every": 12, "eval.every": 12})
    placed = trainer.train_and_evaluate(config, str(tmp_path))
    host = runs["one" if k == 1 else "two"][1]
    for a, b in zip(_leaves(host), _leaves(placed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_k_steps_per_call_under_pmap_on_two_devices_equal_jit(tmp_path):
    fields = {"parallel.num_devices": 2}
    jit = trainer.train_and_evaluate(_config(2, steps=4, **fields), str(tmp_path / "jit"))
    fields["parallel.strategy"] = "pmap"
    pmap = trainer.train_and_evaluate(_config(2, steps=4, **fields), str(tmp_path / "pmap"))
    for a, b in zip(_leaves(jit), _leaves(pmap), strict=True):
        scale = max(float(np.linalg.norm(a)), 1e-12) if a.dtype.kind == "f" else 1.0
        assert float(np.linalg.norm(np.asarray(a, np.float64) - b)) <= 1e-5 * scale


def test_the_weights_check_records_a_non_finite_network_at_the_states_step():
    class Net:
        def __init__(self, params):
            self.params = params

    class State:
        step = jnp.int32(7)

    def networks(state):
        return {
            "encoder": Net({"w": jnp.ones(3)}),
            "decoder": Net({"w": jnp.array([1.0, jnp.nan])}),
        }

    guard = jax.device_get(guard_lib.check_weights((State(), guard_lib.fresh()), networks))
    names = guard_lib.watched_names(["encoder", "decoder"], ["kl", "recon"], True)
    assert guard_lib.describe(guard, names) == (7, ["weights of the decoder"])
    earlier = {"step": jnp.int32(3), "mask": jnp.int32(1 << 2)}  # "kl" at step 3, found first
    kept = jax.device_get(guard_lib.check_weights((State(), earlier), networks))
    assert guard_lib.describe(kept, names) == (3, ["kl"])
