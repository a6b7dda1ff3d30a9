"""The persistent compilation cache: a run whose training step comes from the cache trains bitwise
like the run that compiled it (in a fresh process: tests/test_train.py); a change of a static
field (a width, the batch size) or of XLA's flags compiles anew; `compile_cache_dir` picks the
directory."""

import os

import jax
import numpy as np
import pytest
from conftest import load_config

from genimg_jax.runtime import compile_cache
from genimg_jax.runtime import setup as runtime_setup
from genimg_jax.training import loop as trainer
from genimg_jax.training import programs

COMPILED = "compiled the training step in"


def _train(config, workdir, capsys):
    """Trains `config` for two steps in-process with its training step built anew (as in a new
    process, only the persistent cache can supply the executable), with the cache `genimg`'s
    runtime setup applies for it; returns the trainer's line about compiling the step and the
    final state."""
    runtime_setup.use_compile_cache(config.compile_cache_dir)
    programs._STRATEGIES.clear()
    config.train.steps = 2
    state = jax.device_get(trainer.train_and_evaluate(config, str(workdir)))
    (line,) = [x for x in capsys.readouterr().out.splitlines() if COMPILED in x]
    return line, state


def test_a_cache_hit_trains_bitwise_like_the_miss_and_a_changed_field_or_flag_compiles_anew(
    tmp_path, capsys
):
    config = load_config("vae_mnist")
    config.parallel.num_devices = 1
    config.compile_cache_dir = str(tmp_path / "cache")
    try:
        _misses_and_hits(config, tmp_path, capsys)
    finally:
        runtime_setup.use_compile_cache("auto")  # the suite's cache again


def _misses_and_hits(config, tmp_path, capsys) -> None:
    miss, missed = _train(config, tmp_path / "first", capsys)
    assert "(cached)" not in miss and os.listdir(tmp_path / "cache")
    hit, hit_state = _train(config, tmp_path / "again", capsys)
    assert "(cached)" in hit, hit
    for a, b in zip(jax.tree.leaves(missed), jax.tree.leaves(hit_state), strict=True):
        np.testing.assert_array_equal(a, b)
    for field, value in [("model.width", 16), ("train.batch_size", 8)]:
        changed = config.copy_and_resolve_references()
        section, key = field.split(".")
        changed[section][key] = value
        assert "(cached)" not in _train(changed, tmp_path / field, capsys)[0], field
    # a flag XLA:CPU ignores here, but a new key all the same
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"] + " --xla_cpu_enable_fast_math=false")
        assert "(cached)" not in _train(config, tmp_path / "flags", capsys)[0]
    assert "(cached)" in _train(config, tmp_path / "same again", capsys)[0]


def test_the_cache_dir_setting_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == str(tmp_path / "xdg" / "genimg_jax" / "xla")
    assert compile_cache.resolve("") is None
    assert compile_cache.resolve("~/c") == os.path.expanduser("~/c")
    # "auto": what JAX was given (here by the suite, JAX_COMPILATION_CACHE_DIR), else the default
    assert compile_cache.resolve("auto") == os.environ["JAX_COMPILATION_CACHE_DIR"]
    previous = runtime_setup.use_compile_cache(str(tmp_path / "mine"))
    try:
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
        assert (
            runtime_setup.use_compile_cache("") is None
            and jax.config.jax_compilation_cache_dir is None
        )
    finally:
        runtime_setup.use_compile_cache("auto")
    assert previous == str(tmp_path / "mine")
    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"]


def test_every_program_is_cached_unless_the_user_set_a_minimum_compile_time(monkeypatch):
    option = "jax_persistent_cache_min_compile_time_secs"
    before = getattr(jax.config, option)
    try:
        monkeypatch.delenv(compile_cache.MIN_COMPILE_TIME_VAR, raising=False)
        jax.config.update(option, compile_cache.JAX_MIN_COMPILE_TIME)  # JAX's default
        runtime_setup.use_compile_cache("auto")
        assert getattr(jax.config, option) == 0.0
        jax.config.update(option, 2.5)  # the user's own, from their script
        runtime_setup.use_compile_cache("auto")
        assert getattr(jax.config, option) == 2.5
        monkeypatch.setenv(compile_cache.MIN_COMPILE_TIME_VAR, "1")  # ...or from the environment
        jax.config.update(option, 1.0)
        runtime_setup.use_compile_cache("auto")
        assert getattr(jax.config, option) == 1.0
    finally:
        jax.config.update(option, before)
