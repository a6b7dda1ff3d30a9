"""The Python API: the README's example runs as it is, and `genimg_jax` exports what it names."""

import os
import re

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
