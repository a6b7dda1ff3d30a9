"""A small CNN classifier trained offline on the data set itself: the feature network for FID,
KID, precision/recall and the Inception Score on MNIST-like data (the "domain classifier"
practice; Inception features need downloaded weights and suit natural 299-px images).

Images are uint8 in [0, 255] or float in [0, 1], [B, S, S, C] with S in {28, 32, 64}; a GAN's
samples in [-1, 1] go in as (x + 1) / 2.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
PyTree = Any
FEATURE_DIM = 128
DEFAULT_BATCH = 500  # images per forward pass in features_and_probs
DEFAULT_WIDTHS = (32, 64, 128)


class Classifier(nn.Module):
    """3×(3×3 stride-2 conv, ReLU), global mean pool, Dense(128) ReLU, Dense(K):
    x [B, S, S, C] in [0, 1] -> (logits [B, K], penultimate features [B, 128]).

    Strided convs rather than max-pooling: max-pool gradients are ~10x slower on XLA:CPU."""

    num_classes: int
    widths: tuple[int, ...] = DEFAULT_WIDTHS

    @nn.compact
    def __call__(self, x: Array, taps: bool = False) -> tuple[Array, Array] | list[Array]:
        """(logits, features), or with `taps` the conv layers' outputs [B, h, w, C_l]."""
        h, maps = x.astype(jnp.float32) * 2.0 - 1.0, []  # centre the pixels
        for width in self.widths:
            h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME")(h))
            maps.append(h)
        if taps:
            return maps
        features = nn.relu(nn.Dense(FEATURE_DIM, name="features")(h.mean(axis=(1, 2))))
        return nn.Dense(self.num_classes, name="logits")(features), features


def to_unit_range(images: np.ndarray | Array) -> np.ndarray:
    """uint8 [0, 255] images -> float32 [0, 1]; float images pass through as float32."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32)


def module_for(params: PyTree) -> Classifier:
    """The Classifier that `params` belong to (class count and widths read off their shapes)."""
    convs = sorted((k for k in params if k.startswith("Conv_")), key=lambda k: int(k[5:]))
    widths = tuple(int(params[k]["kernel"].shape[-1]) for k in convs)
    return Classifier(int(params["logits"]["kernel"].shape[-1]), widths)


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: Classifier, params: PyTree, x: Array) -> tuple[Array, Array]:
    return module.apply({"params": params}, x)


def predict_logits(params: PyTree, images: np.ndarray) -> np.ndarray:
    """Class logits [N, K] of images [N, S, S, C] (uint8, or float in [0, 1])."""
    return features_and_probs(params, images, return_logits=True)[1]


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _train_step(
    module: Classifier,
    learning_rate: float,
    params: PyTree,
    opt_state: optax.OptState,
    images: Array,
    labels: Array,
    idx: Array,
) -> tuple[PyTree, optax.OptState, Array]:
    """One Adam step on the examples idx [B] of images [N, S, S, C] and labels [N]."""

    def loss_fn(p: PyTree) -> Array:
        logits, _ = module.apply({"params": p}, images[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optax.adam(learning_rate).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    steps: int = 600,
    batch_size: int = 64,
    seed: int = 0,
    learning_rate: float = 2e-3,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
) -> tuple[PyTree, Callable[[PyTree, np.ndarray], np.ndarray]]:
    """Trains a Classifier with Adam on images [N, S, S, C] and int labels [N]; returns
    (params, predict) with predict(params, images) -> logits [N, K]. Deterministic in `seed`.

    Batches are drawn epoch by epoch from seeded permutations of the whole set, which is kept
    in device memory (these sets are small).
    """
    x = to_unit_range(images)  # [N, S, S, C]
    y = np.asarray(labels, np.int32)  # [N]
    if x.ndim != 4 or y.shape != x.shape[:1]:
        raise ValueError(f"images [N, S, S, C] and labels [N] must pair up: {x.shape}, {y.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, num_classes={num_classes})")
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch_size // len(x))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(epochs)])
    batches = order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)  # [steps, B]
    x, y = jax.device_put((x, y))
    module = Classifier(num_classes, tuple(widths))
    params = module.init(jax.random.key(seed), x[:1])["params"]
    opt_state = optax.adam(learning_rate).init(params)
    for idx in batches:  # a Python loop: XLA:CPU runs convs in a scan body ~10x slower
        params, opt_state, _ = _train_step(
            module, float(learning_rate), params, opt_state, x, y, idx
        )
    return params, predict_logits


def features_and_probs(
    params: PyTree, images: np.ndarray, batch_size: int = DEFAULT_BATCH, return_logits: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, 128], class probabilities [N, K]) of images [N, S, S, C] (uint8, or float
    in [0, 1]), `batch_size` at a time through one compiled forward pass."""
    module = module_for(params)
    images = to_unit_range(images)
    n = len(images)
    size = min(batch_size, n)
    padded = np.concatenate([images, np.zeros((-n % size, *images.shape[1:]), np.float32)])
    features, outputs = [], []
    for i in range(0, len(padded), size):
        logits, feats = _apply(module, params, padded[i : i + size])
        features.append(np.asarray(feats))
        outputs.append(np.asarray(logits if return_logits else jax.nn.softmax(logits)))
    return np.concatenate(features)[:n], np.concatenate(outputs)[:n]


def accuracy(params: PyTree, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images [N, ...] whose predicted class equals labels [N]."""
    return float(np.mean(predict_logits(params, images).argmax(axis=1) == np.asarray(labels)))
