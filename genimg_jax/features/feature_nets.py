"""The feature networks that GAN scores are computed on, chosen by `config.eval.feature_net`:

- "classifier": a small CNN trained by genimg on the data set itself (`genimg train-classifier`,
  or on first use), cached under the data dir; its test accuracy goes with every score.
- "inception": the FID InceptionV3 (pool3, 2048-d) with weights read from the local file
  `config.eval.inception_weights` (docs/inception_weights.md says how to make one).

Either is a `FeatureNet`: a pure `extract(images) -> (features, class probabilities)` on images
in [0, 1], and a fingerprint of its weights that keys cached reference statistics. Families
whose other scores need no features (the autoencoders' PSNR and SSIM) also take "none": no
feature net, no feature scores (data without labels and no Inception weights at hand).
"""

import hashlib
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import ml_collections
import numpy as np

from genimg_jax.core import fields
from genimg_jax.data import pipeline
from genimg_jax.features import classifier, inception

FEATURE_NETS = ("classifier", "inception")


def add_defaults(c: ml_collections.ConfigDict) -> None:
    """The `eval` fields choosing the feature net, for families scored on features."""
    c.eval.feature_net = "classifier"  # or "inception" (needs eval.inception_weights)
    c.eval.inception_weights = ""  # local .npz (docs/inception_weights.md); never downloaded
    c.eval.classifier_steps = 600  # training steps of the domain classifier


def rules(config: ml_collections.ConfigDict, optional: bool = False) -> fields.Rules:
    """The rules of `add_defaults`' fields: InceptionV3 scores need the local weights file;
    `optional`: "none" is a choice too."""
    ev = config.eval
    needs_weights = ev.scores and ev.feature_net == "inception"
    return {
        "eval.feature_net": fields.one_of(FEATURE_NETS + ("none",) * optional),
        "eval.classifier_steps": fields.positive(),
        "eval.inception_weights": (
            lambda v: not needs_weights or os.path.isfile(os.path.expanduser(v)),
            (
                "a local .npz file when eval.feature_net='inception' scores (nothing is "
                "downloaded; docs/inception_weights.md says how to make it), or use "
                "eval.feature_net='classifier'"
            ),
        ),
    }


class FeatureNet(NamedTuple):
    """A feature network with what its scores must be reported with."""

    name: str  # "classifier" | "inception"
    fingerprint: str  # sha256 of the weights: two nets share cached statistics only if equal
    extract: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # [0,1] images -> (f, probs)
    num_classes: int  # of the probabilities (the data set's classes, or Inception's 1008)
    facts: dict[str, float]  # reported next to each score, e.g. the classifier's test accuracy


def load_images(config: ml_collections.ConfigDict, split: str, num: int):
    """(uint8 images [n, S, S, C] fitted to the model's geometry, labels [n] or None): the first
    `num` examples of a split (n = min(num, split size))."""
    source = pipeline.load_data_split(config.data, split)
    example = source.get(np.arange(min(num, len(source))))
    images = pipeline.fit_images(example["image"], config.data.image_size, config.data.channels)
    return images, example.get("label")


def fingerprint(params: Any) -> str:
    """sha256 of a parameter tree's serialised bytes."""
    return hashlib.sha256(flax.serialization.to_bytes(params)).hexdigest()


def classifier_path(config: ml_collections.ConfigDict) -> str:
    """Where the domain classifier of this data set, geometry and step count is cached."""
    data = config.data
    name = f"{pipeline.data_key(data)}_{data.image_size}x{data.channels}_"
    name += str(config.eval.classifier_steps)
    folder = os.path.join(pipeline.default_data_dir(data.data_dir), "genimg_classifiers")
    return os.path.join(folder, f"{name}.msgpack")


def train_domain_classifier(config: ml_collections.ConfigDict) -> tuple[Any, float, str]:
    """Trains the domain classifier on the training split (deterministic), writes it to
    `classifier_path(config)` atomically and returns (params, test accuracy, path)."""
    data = config.data
    train_x, train_y = load_images(config, data.train_split, 10**9)
    test_x, test_y = load_images(config, data.eval_split, 10**9)
    if train_y is None or test_y is None:
        raise pipeline.DataError(
            f"data set {data.name!r} has no labels, which the domain classifier needs; set "
            "eval.feature_net='inception' (with eval.inception_weights), 'none' (autoencoders: "
            "scores without rFID) or eval.scores=False"
        )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    params, _ = classifier.train_classifier(
        train_x, train_y, num_classes, steps=config.eval.classifier_steps
    )
    path = classifier_path(config)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "wb") as f:
        f.write(flax.serialization.to_bytes(params))
    os.replace(partial, path)  # processes sharing a data dir never see half a file
    return params, classifier.accuracy(params, test_x, test_y), path


def domain_classifier_params(config: ml_collections.ConfigDict) -> Any:
    """The cached domain classifier's parameters (trained now, once, if there are none)."""
    path = classifier_path(config)
    if not os.path.exists(path):
        print(
            f"genimg: training the domain classifier for {config.data.name} once ({path}; "
            f"`genimg train-classifier` does this ahead)",
            file=sys.stderr,
        )
        train_domain_classifier(config)
    try:
        with open(path, "rb") as f:
            params = flax.serialization.msgpack_restore(f.read())
        int(params["logits"]["kernel"].shape[-1])  # a classifier's parameters
    except (ValueError, KeyError, TypeError) as e:  # msgpack raises ValueError subclasses
        raise pipeline.DataError(
            f"the cached domain classifier {path} is unreadable ({type(e).__name__}); rebuild "
            f"it: genimg train-classifier --config CONFIG"
        ) from None
    return params


def domain_classifier(config: ml_collections.ConfigDict) -> FeatureNet:
    """The cached domain classifier (trained now, once, if there is none) as a FeatureNet."""
    params = domain_classifier_params(config)
    num_classes = int(params["logits"]["kernel"].shape[-1])
    test_x, test_y = load_images(config, config.data.eval_split, 10**9)
    test_accuracy = classifier.accuracy(params, test_x, test_y)
    return FeatureNet(
        name="classifier",
        fingerprint=fingerprint(params),
        extract=lambda images: classifier.features_and_probs(params, images),
        num_classes=num_classes,
        facts={"classifier_test_accuracy": test_accuracy},
    )


def inception_net(config: ml_collections.ConfigDict) -> FeatureNet:
    """InceptionV3 pool3 features and softmax of its 1008 logits, from the local weights file."""
    variables = inception.load_weights(os.path.expanduser(config.eval.inception_weights))

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = classifier.to_unit_range(images) * 2.0 - 1.0  # [0, 1] -> Inception's [-1, 1]
        features, logits = inception.features_and_logits(variables, x)
        return features, np.asarray(jax.nn.softmax(logits, axis=-1))

    return FeatureNet(
        name="inception",
        fingerprint=fingerprint(variables),
        extract=extract,
        num_classes=inception.NUM_LOGITS,
        facts={},
    )


def for_config(config: ml_collections.ConfigDict) -> FeatureNet:
    """The feature network `config.eval.feature_net` names."""
    build = {"classifier": domain_classifier, "inception": inception_net}
    return build[config.eval.feature_net](config)
