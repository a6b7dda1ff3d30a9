"""A model family from a user's own module (tests/tiny_family.py) trains, resumes and samples
through the same code as the built-in ones: registered without editing the package, validated
by its own rules, resumed by `genimg train --workdir` from its config.json (which names the
module to import) bitwise like an uninterrupted run, and sampled by `genimg sample`."""

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tiny_family
from conftest import REPO

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core.errors import ConfigError
from genimg_jax.training import loop as trainer

TESTS = os.path.dirname(os.path.abspath(__file__))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, REPO]))
    return subprocess.run(
        [sys.executable, "-m", "genimg_jax.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_a_family_from_a_users_module_trains_resumes_and_samples(tmp_path):
    config = tiny_family.get_config()
    assert isinstance(families.of(config), tiny_family.TinyAE)
    whole = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "whole")))
    assert int(whole.step) == 12 and os.path.exists(
        tmp_path / "whole" / "samples" / "decoded_000012.png"
    )

    # A run stopped after its step-6 checkpoint, resumed by the CLI from its config.json alone
    parts = tmp_path / "parts"
    trainer.train_and_evaluate(config, str(parts))
    shutil.rmtree(parts / "checkpoints" / "12")
    resumed = _cli("train", "--workdir", str(parts))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = trainer.train_and_evaluate(config, str(parts))  # finished: restores step 12
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_array_equal(a, b)

    out = tmp_path / "grid.png"
    sampled = _cli("sample", "--workdir", str(parts), "--num", "9", "--out", str(out))
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert os.path.getsize(out) > 0


def test_the_familys_own_rules_and_scores_are_used():
    config = tiny_family.get_config()
    config.model.hidden = 0
    with pytest.raises(ConfigError, match="model.hidden=0 is invalid"):
        config_lib.validate(config)
    config = tiny_family.get_config()
    config.eval.best_metric = "fid"  # a GAN score: not one this family reports
    with pytest.raises(
        ConfigError, match=r"eval.best_metric='fid' is invalid: use one of \['', 'mse'\]"
    ):
        config_lib.validate(config)


def test_an_unimportable_family_module_is_named():
    with pytest.raises(
        ConfigError, match="model.family_module='no_such_module' cannot be imported"
    ):
        config_lib.base_config("tiny_ae", family_module="no_such_module")


def test_the_users_family_step_under_pmap_equals_its_jit_step():
    """A family's step receives `axis_name` under pmap and must compute what jit computes on the
    global batch: the tiny family's, on 4 devices, against jit (also a check that the loop's
    pmap strategy passes the axis name on)."""
    n = 4
    if len(jax.local_devices()) < n:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    config = tiny_family.get_config()
    family = families.of(config)
    state = families.create_state(config, jax.random.key(0))
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1)}
    rng = jax.random.key(2)
    single, m1 = jax.jit(family.make_train_step(config, None))(state, batch, rng)
    multi, m2 = jax.pmap(
        family.make_train_step(config, "data"),
        axis_name="data",
        in_axes=(None, 0, None),
        devices=jax.local_devices()[:n],
    )(state, jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch), rng)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params), strict=True):
        np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-7)  # reduction order only
        np.testing.assert_array_equal(b[0], b[-1])  # every device holds the same update
    np.testing.assert_allclose(m1["loss"], m2["loss"][0], rtol=1e-6)


def test_a_family_missing_a_required_method_cannot_be_made():
    class Incomplete(families.Family):
        def add_defaults(self, c):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
