"""Reference features of real images, computed once per (data set, split, geometry, number of
images, feature network) and cached as `.npz` under the data dir: every later evaluation of
every run on that data reads them instead of pushing the test set through the network again.

The key holds the feature network's weight fingerprint, so retrained or other weights never
read stale statistics. Writes are atomic (processes and sweep members share the cache).
"""

import os
import zipfile

import ml_collections
import numpy as np

from genimg_jax.data import pipeline
from genimg_jax.features.feature_nets import FeatureNet, load_images


def reference_split(config: ml_collections.ConfigDict) -> str:
    """The split whose images samples are compared with: `eval.reference_split`, or where that
    is "" (the default), `data.eval_split`."""
    return config.eval.get("reference_split", "") or config.data.eval_split


def cache_path(config: ml_collections.ConfigDict, net: FeatureNet, num: int) -> str:
    """The cache file of `num` images of the reference split under feature net `net`."""
    data = config.data
    name = (
        f"{pipeline.data_key(data)}_{reference_split(config)}_{data.image_size}x"
        f"{data.channels}_n{num}_"
        f"{net.name}_{net.fingerprint[:16]}.npz"
    )
    return os.path.join(pipeline.default_data_dir(data.data_dir), "genimg_reference", name)


def reference_features(config: ml_collections.ConfigDict, net: FeatureNet, num: int) -> np.ndarray:
    """Features [n, D] of the first `num` images of the reference split, read from the cache,
    or computed and cached (also when the cached file is damaged)."""
    path = cache_path(config, net, num)
    if os.path.exists(path):
        try:
            with np.load(path) as cached:
                return cached["features"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # damaged: computed again and rewritten below
    images, _ = load_images(config, reference_split(config), num)
    features, _ = net.extract(images)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(partial, features=features)
    os.replace(partial, path)
    return features
