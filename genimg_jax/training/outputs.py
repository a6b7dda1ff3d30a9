"""Where a run reports: metrics as JSONL and TensorBoard events, image grids as PNG, and the
run's record (resolved config, package versions, git commit). Only process 0 writes."""

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata

import jax
import numpy as np
from PIL import Image

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "ml-collections",
    "numpy",
    "scikit-learn",  # the disentanglement scores' estimators (metrics/disentanglement.py)
)


def unit_range(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Floats in `value_range` -> float32 in [0, 1] (clipped; NaN as 0)."""
    lo, hi = value_range
    return np.clip(np.nan_to_num((np.asarray(images, np.float32) - lo) / (hi - lo)), 0, 1)


def to_uint8(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Floats in `value_range` -> uint8 in [0, 255], as image files hold them."""
    return np.round(unit_range(images, value_range) * 255).astype(np.uint8)


def image_grid(images: np.ndarray, value_range: tuple[float, float], cols: int = 0) -> np.ndarray:
    """[N, H, W, C] floats in `value_range` -> uint8 [rows·(H+1)+1, cols·(W+1)+1, C] tiles,
    row by row (`cols` 0: about √N)."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    pixels = unit_range(images, value_range)
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 0.5, np.float32)
    for i, image in enumerate(pixels):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = image
    return np.round(grid * 255).astype(np.uint8)


def save_png(grid: np.ndarray, path: str) -> None:
    """Writes a uint8 [H, W, 1 or 3] image as PNG, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, or None outside git."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        git = functools.partial(
            subprocess.run, capture_output=True, text=True, timeout=10, cwd=here, check=False
        )
        out = git(["git", "rev-parse", "HEAD"])
        dirty = git(["git", "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_record() -> dict:
    """What produced a run: package versions, git commit, Python, devices, command line, and
    the process-wide settings its programs compiled under (XLA_FLAGS, JAX's dispatch and
    compilation cache: `runtime.setup`)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "argv": sys.argv,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_cpu_enable_async_dispatch": bool(jax.config.read("jax_cpu_enable_async_dispatch")),
        "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
    }


def metric_rows(lines: Iterable[str]) -> list[dict]:
    """The rows among a metrics.jsonl's lines, in order; a line cut short by a killed run or a
    full disk is skipped."""
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def read_metrics(path: str) -> list[dict]:
    """The rows of a metrics.jsonl; none when it cannot be read."""
    try:
        with open(path) as f:
            return metric_rows(f)
    except OSError:
        return []


class MetricWriter:
    """Appends metric rows to `metrics.jsonl` and TensorBoard events under `tb/`."""

    def __init__(self, workdir: str, start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        if not enabled:
            return
        self._drop_rows_after(start_step)
        from tensorboardX import SummaryWriter  # imported lazily: only process 0 writes

        self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=start_step or None)

    def _drop_rows_after(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint that the run restarts from, and a
        row the stop cut short. The file is replaced whole: a kill here loses no row, and a
        failed rewrite (a full disk) leaves the old file and no partial copy."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:  # unreadable: fail, rather than write an empty file
            rows = [row for row in metric_rows(f) if row["step"] <= step]
        partial = self.path + ".tmp"
        try:
            with open(partial, "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
            os.replace(partial, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise

    def write(self, step: int, metrics: dict) -> None:
        """One row of scalar metrics at `step`."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key != "step":
                self.tb.add_scalar(key, value, step)

    def write_image(self, step: int, name: str, grid: np.ndarray) -> None:
        """A uint8 [H, W, C] grid to TensorBoard."""
        if self.enabled:
            self.tb.add_image(name, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
