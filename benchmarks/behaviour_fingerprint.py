"""Fingerprints of what training computes: every shipped config's `:quick` variant trained from
scratch through the Python API (`genimg_jax.train`), with scores on, recorded as its metric
rows, its scores and a hash of every array of its final state. Two commits that compute the same
thing give the same file, bit for bit; a refactor is checked by recording before and comparing
after.

  python benchmarks/behaviour_fingerprint.py record OUT.json
  python benchmarks/behaviour_fingerprint.py compare OLD.json NEW.json

Configs whose data cannot be had offline (celeb_a, cifar10, a user's folder) run on the bundled
digits at their own image size and channels, and are scored on the domain classifier's
features where they name the Inception network; the disentanglement study's scores are taken at
1% of the study's sample counts. The state's hash is taken over its arrays' bytes as
a sorted multiset, so moving an array within the state (a field renamed, a statistic kept apart
from the hyperparameters) keeps the hash while any changed value changes it."""

import glob
import hashlib
import json
import os
import sys
import tempfile

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLINE = ("bundled_mnist", "shapes")


def _state_hash(state) -> str:
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]
    digests = sorted(
        hashlib.sha256(x.dtype.str.encode() + str(x.shape).encode() + x.tobytes()).hexdigest()
        for x in leaves
    )
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: v for k, v in r.items() if k not in ("steps_per_sec", "time")} for r in rows]


def fingerprint(path: str) -> dict:
    import genimg_jax

    config = genimg_jax.load_config(path, "quick")
    if config.data.name not in OFFLINE:
        config.data.name = "bundled_mnist"
        config.data.path = ""
        config.data.labels_from_folders = False
    config.eval.scores = True
    if config.eval.get("feature_net") == "inception":  # its weights cannot be had offline
        config.eval.feature_net = "classifier"
    if config.eval.get("disentanglement_scale", 0) > 0:  # the study's scores, at 1% of its counts
        config.eval.disentanglement_scale = 0.01
    config.compile_cache_dir = ""
    with tempfile.TemporaryDirectory() as workdir:
        state = genimg_jax.train(config, workdir)
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
        return {
            "rows": _rows(workdir),
            "eval": summary.get("eval", {}),
            "state": _state_hash(state),
        }


def record(out: str) -> None:
    results = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        name = os.path.basename(path)[: -len(".py")]
        results[name] = fingerprint(path)
        print(name, results[name]["state"][:16], flush=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)


def compare(old: str, new: str) -> int:
    with open(old) as f:
        a = json.load(f)
    with open(new) as f:
        b = json.load(f)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    for name in differ:
        print(f"{name}: differs")
    print(f"{len(a.keys() & b.keys()) - len(differ)} of {len(a.keys() | b.keys())} configs equal")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
