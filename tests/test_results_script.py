"""benchmarks/results.py, the generator of docs/results.md, on one tiny job: the row it writes
holds the commit, the command, the wall time and a link to the sample grid it copied; a second
run refuses to resume the job's workdir unless `--resume`, which keeps the finished job's row;
each row's grid is the kind its run draws, and reaches the docs only after the last job (a job's
run record sees the commit's tree, not one the earlier jobs' grids made dirty)."""

import importlib.util
import os
import re
import subprocess
import sys

from conftest import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "results.py")


def test_results_script_writes_a_row_per_job(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n> old quote\n\nintro\n\n## Notes\n\nhand-written\n")
    argv = [sys.executable, SCRIPT, "--only", "vae_mnist", "--steps", "4", "--doc", str(doc)]
    argv += ["--out", str(tmp_path / "runs"), "--settle", "0", "--allow-dirty"]
    argv += [
        "--config.parallel.num_devices=1",
        "--config.eval.examples=32",
        "--config.eval.iwae_k=4",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    text = doc.read_text()
    assert "NOT the default-steps results" in text and "old quote" not in text
    assert "\n\nintro\n\n" in text and "## Notes\n\nhand-written" in text  # hand-written: kept
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, check=True)
    assert head.stdout.decode().strip() in text  # the header's commit
    assert re.search(r" \((AVX-512|AVX2|no AVX2)\), \d+ cores; ", text)  # the machine's
    row = next(line for line in text.splitlines() if line.startswith("| `vae_mnist` | 4 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    neg_elbo, wall, load, commit, grid, command = cells[2], *cells[-5:]
    assert float(neg_elbo) > 0
    assert re.fullmatch(r"(\d+ min )?\d+ s", wall) and float(load) >= 0
    assert re.fullmatch(r"`[0-9a-f]{12}(-dirty)?`", commit)
    assert command.startswith("`") and "train --config configs/vae_mnist.py --workdir" in command
    assert "--config.train.steps=4" in command and "--config.eval.examples=32" in command
    assert grid == "[png](results/vae_mnist.png)"
    assert (tmp_path / "results" / "vae_mnist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    staged = tmp_path / "runs" / "vae_mnist.png"  # beside the job's workdir, row and log
    assert staged.read_bytes() == (tmp_path / "results" / "vae_mnist.png").read_bytes()
    # every other job is listed with why it did not run only when asked for; here it is not
    assert "needs cifar10" not in text

    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode != 0 and "--resume" in again.stderr  # the workdir would resume
    resumed = subprocess.run(
        argv + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[vae_mnist] kept" in resumed.stdout and "--workdir" not in resumed.stdout  # no run
    assert row in doc.read_text().splitlines()


def test_results_script_dry_run_lists_every_job():
    argv = [sys.executable, SCRIPT, "--dry-run"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("--config.model.num_classes=0" in line for line in lines)  # unconditional
    assert "# sngan_cifar10: needs cifar10 (not run here)" in lines
    configs = sorted(os.listdir(os.path.join(REPO, "configs")))
    assert len(lines) == len([c for c in configs if c.endswith(".py")]) + 1


def _script():
    spec = importlib.util.spec_from_file_location("results_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_grids_reach_the_docs_only_after_the_last_job(tmp_path, monkeypatch):
    script, docs = _script(), tmp_path / "docs"
    docs_written_before = []

    def run_job(job, settle):  # what run_job leaves: a row and its grid beside the workdir
        docs_written_before.append(docs.exists())
        os.makedirs(os.path.dirname(job["workdir"]), exist_ok=True)
        staged = job["workdir"] + ".png"
        with open(staged, "wb") as f:
            f.write(job["name"].encode())
        row = {"load": 0.0, "wall": 1.0, "commit": "0" * 12, "scores": {"neg_elbo": 1.0}}
        return job | row | {"grid": staged, "command": "genimg train"}

    monkeypatch.setattr(script, "run_job", run_job)
    argv = ["--only", "vae_mnist,vae_binary_mnist", "--doc", str(docs / "results.md")]
    argv += ["--out", str(tmp_path / "runs"), "--settle", "0", "--allow-dirty"]
    assert script.main(argv) == 0
    assert docs_written_before == [False, False]
    for name in ("vae_mnist", "vae_binary_mnist"):
        assert (docs / "results" / f"{name}.png").read_bytes() == name.encode()
        assert f"[png](results/{name}.png)" in (docs / "results.md").read_text()


def test_each_row_shows_its_runs_last_grid_of_the_kind_it_draws(tmp_path):
    """A GAN's samples, a VAE's prior samples, an autoencoder's reconstructions: the last step's."""
    script = _script()
    grids = tmp_path / "run" / "samples"
    grids.mkdir(parents=True)
    dest = str(tmp_path / "out.png")
    assert script.last_grid(str(tmp_path / "run"), dest) == ""
    for name in ["reconstructions_000900.png", "reconstructions_001000.png"]:
        (grids / name).write_bytes(name.encode())
    assert script.last_grid(str(tmp_path / "run"), dest) == dest
    assert (tmp_path / "out.png").read_bytes() == b"reconstructions_001000.png"
    (grids / "prior_samples_000500.png").write_bytes(b"prior")
    script.last_grid(str(tmp_path / "run"), dest)
    assert (tmp_path / "out.png").read_bytes() == b"prior"
