"""The Python API: the README's example runs as it is, and `genimg_jax` exports what it names."""

import json
import os
import re
import subprocess
import sys

import numpy as np
from conftest import REPO

import genimg_jax


def test_the_readmes_python_example_runs(tmp_path, monkeypatch, capsys):
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Python API") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 5)], re.DOTALL)
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")  # "from the repository root"
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  the README is ours
    assert int(namespace["state"].step) == 12 and float(namespace["state"].hparams["beta"]) == 4
    images = namespace["images"]
    assert images.shape == (16, 28, 28, 1) and 0 <= images.min() and images.max() <= 1
    assert os.path.isdir(tmp_path / "runs" / "notebook" / "checkpoints")
    assert int(namespace["fresh"].step) == 1 and np.isfinite(namespace["metrics"]["loss"])
    assert "'loss'" in capsys.readouterr().out


def test_the_package_exports_its_entry_points_lazily():
    assert genimg_jax.__all__ == sorted(genimg_jax._API)
    for name in genimg_jax.__all__:
        assert callable(getattr(genimg_jax, name)), name
    assert genimg_jax.train.__name__ == "train_and_evaluate"


def test_the_readmes_family_contract_is_the_codes():
    """README "Adding a model family": its table names every abstract member of
    `core.family.Family`, and nothing the class lacks."""
    from genimg_jax.core.family import Family

    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Adding a model family") :]
    section = section[: section.index("\n## ", 5)]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    named = {m for line in table for m in re.findall(r"`(\w+)", line.split("|")[1])}
    assert Family.__abstractmethods__ <= named, Family.__abstractmethods__ - named
    assert all(hasattr(Family, name) for name in named), [
        n for n in named if not hasattr(Family, n)
    ]


def test_the_python_apis_train_changes_no_process_wide_setting(tmp_path):
    """`genimg_jax.train` in a fresh process: XLA_FLAGS, JAX's compilation cache directory and
    its CPU dispatch are as they were before (the CLI's runtime setup is what changes them,
    `genimg_jax.setup_runtime`), and the run record keeps the flags the run compiled under."""
    script = f"""
import json, os, jax, genimg_jax
read = lambda: (os.environ.get("XLA_FLAGS"), jax.config.jax_compilation_cache_dir,
                jax.config.read("jax_cpu_enable_async_dispatch"))
before = read()
config = genimg_jax.load_config({os.path.join(REPO, "configs", "vae_mnist.py")!r}, "quick")
config.train.steps = 2
genimg_jax.train(config, {str(tmp_path / "run")!r})
print(json.dumps({{"before": before, "after": read()}}))
"""
    # only the suite's compile-time flags (conftest.py), none that the runtime setup adds; one
    # device, no cache directory
    compile_time = ("optimization_level", "fusion_emitters", "codegen_split_count")
    flags = " ".join(
        f for f in os.environ["XLA_FLAGS"].split() if f.split("=")[0].endswith(compile_time)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMP")}
    env["XLA_FLAGS"] = flags
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"], seen
    with open(tmp_path / "run" / "run_record.json") as f:
        record = json.load(f)
    assert record["xla_flags"] == flags and "versions" in record


def test_every_path_the_readme_names_exists():
    """Links, `configs/...`-style paths and the Layout tree's entries are real files."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    named = set(re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme))  # markdown links
    tops = "configs|docs|benchmarks|launch|tests|genimg_jax"
    named |= set(re.findall(rf"`((?:{tops})/[\w./-]*)", readme))
    start = readme.index("```\ngenimg_jax/")
    tree = readme[start : readme.index("```", start + 3)]  # the Layout tree
    named |= {
        "genimg_jax/" + m for m in re.findall(r"^  ([\w.]+/?|[\w]+\.py)\s", tree, re.MULTILINE)
    }
    missing = sorted(p for p in named if not os.path.exists(os.path.join(REPO, p)))
    assert not missing, missing
    assert len(readme.splitlines()) <= 350
