"""The persistent compilation cache: a run in a fresh process loads its training step from the
cache and trains bitwise like the run that compiled it; a change of a static field (a width, the
batch size) or of XLA's flags compiles anew; `compile_cache_dir` picks the directory."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, load_config

from genimg_jax import compile_cache, parallel, trainer
from genimg_jax.checkpoint import Checkpoints

QUICK = os.path.join(REPO, "configs", "vae_mnist.py:quick")
COMPILED = "compiled the training step in"


def _train_in_a_fresh_process(workdir, cache_dir) -> str:
    """`genimg train` of the quick VAE on one device in a new process; returns its line about
    compiling the training step."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genimg_jax.main",
            "train",
            "--config",
            QUICK,
            "--workdir",
            str(workdir),
            f"--config.compile_cache_dir={cache_dir}",
            "--config.parallel.num_devices=1",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stdout.splitlines() if COMPILED in x]
    return line


def test_a_cache_hit_in_a_fresh_process_trains_bitwise_like_the_miss(tmp_path):
    cache = tmp_path / "cache"
    miss = _train_in_a_fresh_process(tmp_path / "miss", cache)
    assert "(cached)" not in miss and os.listdir(cache)
    hit = _train_in_a_fresh_process(tmp_path / "hit", cache)
    assert "(cached)" in hit, hit
    config = load_config("vae_mnist")
    config.parallel.num_devices = 1
    template = trainer.initial_state(config, parallel.make_mesh(1))
    states = [Checkpoints(str(tmp_path / run), 3).restore(template) for run in ("miss", "hit")]
    a, b = (jax.tree.leaves(jax.device_get(s)) for s in states)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    rows = []
    for run in ("miss", "hit"):
        with open(tmp_path / run / "metrics.jsonl") as f:
            rows.append([{**json.loads(line), "steps_per_sec": 0} for line in f])
    assert rows[0] == rows[1]


def _compile_step(config, workdir, capsys) -> str:
    """Trains `config` for one step in-process with a training step built anew (as in a new
    process, only the persistent cache can supply its executable); returns the trainer's line
    about compiling it."""
    trainer._STRATEGIES.clear()
    config.train.steps = 1
    trainer.train_and_evaluate(config, str(workdir))
    (line,) = [x for x in capsys.readouterr().out.splitlines() if COMPILED in x]
    return line


def test_a_changed_static_field_or_xla_flag_compiles_anew(tmp_path, capsys):
    config = load_config("vae_mnist")
    config.parallel.num_devices = 1
    config.compile_cache_dir = str(tmp_path / "cache")
    assert "(cached)" not in _compile_step(config, tmp_path / "first", capsys)
    assert "(cached)" in _compile_step(config, tmp_path / "again", capsys)
    for field, value in [("model.width", 16), ("train.batch_size", 8)]:
        changed = config.copy_and_resolve_references()
        section, key = field.split(".")
        changed[section][key] = value
        assert "(cached)" not in _compile_step(changed, tmp_path / field, capsys), field
    with (
        pytest.MonkeyPatch.context() as patch
    ):  # a flag XLA:CPU ignores, but a new key all the same
        patch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"] + " --xla_cpu_enable_fast_math=false")
        assert "(cached)" not in _compile_step(config, tmp_path / "flags", capsys)
    assert "(cached)" in _compile_step(config, tmp_path / "same again", capsys)


def test_the_cache_dir_setting_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == str(tmp_path / "xdg" / "genimg_jax" / "xla")
    assert compile_cache.resolve("") is None
    assert compile_cache.resolve("~/c") == os.path.expanduser("~/c")
    # "auto": what JAX was given (here by the suite, JAX_COMPILATION_CACHE_DIR), else the default
    assert compile_cache.resolve("auto") == os.environ["JAX_COMPILATION_CACHE_DIR"]
    previous = compile_cache.use(str(tmp_path / "mine"))
    try:
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
        assert compile_cache.use("") is None and jax.config.jax_compilation_cache_dir is None
    finally:
        compile_cache.use("auto")
    assert previous == str(tmp_path / "mine")
    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"]
