"""The perceptual distance an autoencoder's reconstruction loss adds (`model.perceptual`):

- "lpips": LPIPS with VGG16 from the local weights file `eval.lpips_weights` (`lpips`);
- "classifier": the same form on the domain classifier's three conv layers with uniform heads
  (LPIPS' "baseline" without learned weights): the feature net genimg trains offline on the
  data set itself, for data without LPIPS weights at hand (it needs the data's labels);
- "auto": LPIPS when its weights file exists, else the domain classifier when the data has
  labels, else none; the run says which (one line on stderr);
- "none".

A `Perceptual` holds the frozen weights (they travel in the training state, so a checkpoint
is the whole truth) and distance(weights, x, y) -> [B] on images in [-1, 1]."""

import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.data import checks
from genimg_jax.features import classifier, feature_nets, lpips

CHOICES = ("auto", "lpips", "classifier", "none")


class Perceptual(NamedTuple):
    name: str  # "lpips" | "classifier"
    weights: Any
    distance: Callable[[Any, jax.Array, jax.Array], jax.Array]


def classifier_distance(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """Σ_l mean_hw Σ_c (x̂_l − ŷ_l)² over the classifier's conv layers (unit-normalised over
    channels, as LPIPS normalises), x and y [B, H, W, C] in [-1, 1]: [B]."""
    module = classifier.module_for(params)
    both = (jnp.concatenate([x, y]) + 1.0) / 2.0  # the classifier reads [0, 1]
    total = 0.0
    for f in module.apply({"params": params}, both, taps=True):
        fx, fy = jnp.split(lpips.unit_channels(f), 2)
        total = total + jnp.mean(jnp.sum(jnp.square(fx - fy), axis=-1), axis=(1, 2))
    return total


def lpips_distance(weights: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return lpips.distance(weights, x, y)


def for_config(config: ml_collections.ConfigDict) -> Perceptual | None:
    """The perceptual distance `model.perceptual` selects (module doc), loaded once per process
    for each choice, weights file and data."""
    choice, path = config.model.perceptual, os.path.expanduser(config.eval.lpips_weights)
    key = (choice, path, config.data.to_json(sort_keys=True), config.eval.classifier_steps)
    if key not in _LOADED:
        _LOADED[key] = _load(choice, path, config)
    return _LOADED[key]


_LOADED: dict[tuple, Perceptual | None] = {}


def _load(choice: str, path: str, config: ml_collections.ConfigDict) -> Perceptual | None:
    say = lambda what: print(f"genimg: perceptual loss: {what}", file=sys.stderr)
    if choice == "none":
        return None
    if choice == "lpips" or (choice == "auto" and os.path.isfile(path)):
        say(f"LPIPS (VGG16) from {path}")
        return Perceptual("lpips", lpips.load_weights(path), lpips_distance)
    if choice == "auto" and not checks.has_labels(config.data):
        say(f"none (no LPIPS weights at {path}; {config.data.name} has no labels for a classifier)")
        return None
    say(f"the domain classifier of {config.data.name} (no LPIPS weights at {path})")
    return Perceptual(
        "classifier", feature_nets.domain_classifier_params(config), classifier_distance
    )
