"""Two training runs of the same config and seed with `deterministic=True`, compared bitwise (the
device check's last part: on a GPU, XLA's deterministic-ops flag is what makes them equal).

    python benchmarks/deterministic_runs.py [--steps 200] [--json out.json] [--tiny]

The main job's DCGAN at 64x64, batch 128 (--tiny: 32x32, batch 16), trains twice in fresh workdirs in this process; the
last line is `bitwise_equal=True|False` and, when not, how many weight arrays differ.
"""

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np

try:
    import genimg_jax  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg_jax import config as config_lib
from genimg_jax.runtime import setup as runtime_setup
from genimg_jax.training import loop as trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", default="")
    parser.add_argument("--tiny", action="store_true", help="32x32, batch 16: a dry run")
    args = parser.parse_args()
    runtime_setup.tune_if_cpu()
    config = config_lib.from_file(os.path.join(REPO, "configs", "dcgan_mnist.py"))
    config.deterministic = True
    config.parallel.num_devices = 1
    config.data.image_size, config.train.batch_size = (32, 16) if args.tiny else (64, 128)
    config.train.steps = args.steps
    config.train.checkpoint_every = config.eval.every = args.steps
    config.eval.scores = False
    states = [
        jax.device_get(trainer.train_and_evaluate(config, tempfile.mkdtemp(prefix="genimg_det_")))
        for _ in range(2)
    ]
    leaves = [jax.tree.leaves(s) for s in states]
    differing = sum(not np.array_equal(a, b) for a, b in zip(*leaves, strict=True))
    result = {
        "backend": jax.default_backend(),
        "steps": args.steps,
        "arrays": len(leaves[0]),
        "differing_arrays": differing,
        "bitwise_equal": differing == 0,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(f"bitwise_equal={differing == 0}")
    sys.exit(0 if differing == 0 else 1)


if __name__ == "__main__":
    main()
