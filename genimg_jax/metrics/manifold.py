"""Sample-quality scores from features and class probabilities: improved precision and recall
(Kynkäänniemi et al. 2019), class coverage, and the Inception Score (Salimans et al. 2016)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DEFAULT_CHUNK = 1024  # query rows per block of the distance matrix: [chunk, N] at a time


@jax.jit
def _squared_distances(a: Array, b: Array) -> Array:
    """||a_i - b_j||² for a [n, D], b [m, D]: [n, m] (clipped at 0 against rounding)."""
    ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * ab
    return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _kth_neighbour_sq(queries: Array, points: Array, k: int) -> Array:
    """Squared distance from each query [n, D] to its (k+1)-th nearest point [m, D]: [n].

    With queries taken from `points`, the nearest point is the query itself (distance 0), so
    this is the distance to its k-th nearest other point.
    """
    neg_smallest, _ = jax.lax.top_k(-_squared_distances(queries, points), k + 1)  # [n, k+1]
    return -neg_smallest[:, -1]


@jax.jit
def _inside_any_ball(queries: Array, centres: Array, radii_sq: Array) -> Array:
    """Whether each query [n, D] lies within some ball (centres [m, D], radii² [m]): [n] bool."""
    return jnp.any(_squared_distances(queries, centres) <= radii_sq[None, :], axis=1)


def _by_chunks(fn, queries: np.ndarray, chunk: int, *args) -> np.ndarray:
    """fn(queries block, *args) over fixed-size blocks of rows (the last one padded)."""
    n = len(queries)
    padded = np.concatenate([queries, np.zeros((-n % chunk, queries.shape[1]), queries.dtype)])
    blocks = [np.asarray(fn(padded[i : i + chunk], *args)) for i in range(0, len(padded), chunk)]
    return np.concatenate(blocks)[:n]


def knn_radii(features: np.ndarray, k: int = 3, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Distance from each of features [N, D] to its k-th nearest neighbour in the set: [N]."""
    features = np.asarray(features, np.float32)
    if not 1 <= k < len(features):
        raise ValueError(f"k={k} must lie in [1, N-1] for N={len(features)} features")
    points = jax.device_put(features)
    d2 = _by_chunks(lambda q: _kth_neighbour_sq(q, points, k), features, min(chunk, len(features)))
    return np.sqrt(d2)


def manifold_coverage(
    queries: np.ndarray, reference: np.ndarray, k: int = 3, chunk: int = DEFAULT_CHUNK
) -> float:
    """Fraction of queries [M, D] inside the k-NN manifold of reference [N, D]: the union of
    balls around each reference point with radius its k-th nearest-neighbour distance."""
    queries = np.asarray(queries, np.float32)
    reference = np.asarray(reference, np.float32)
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(
            f"features must be [M, D] and [N, D], got {queries.shape}, {reference.shape}"
        )
    radii_sq = jax.device_put(knn_radii(reference, k, chunk) ** 2)
    centres = jax.device_put(reference)
    inside = _by_chunks(
        lambda q: _inside_any_ball(q, centres, radii_sq), queries, min(chunk, len(queries))
    )
    return float(np.mean(inside))


def precision_recall(
    real_features: np.ndarray, fake_features: np.ndarray, k: int = 3, chunk: int = DEFAULT_CHUNK
) -> tuple[float, float]:
    """Improved (precision, recall) of Kynkäänniemi et al. 2019 with k-NN radii.

    Precision: fraction of fake samples inside the real manifold (quality); recall: fraction of
    real samples inside the fake manifold (coverage). real [N, D], fake [M, D].
    """
    precision = manifold_coverage(fake_features, real_features, k, chunk)
    recall = manifold_coverage(real_features, fake_features, k, chunk)
    return precision, recall


def _labels(probs_or_labels: np.ndarray) -> np.ndarray:
    """Class labels [N] from labels [N] or class probabilities [N, K] (argmax)."""
    a = np.asarray(probs_or_labels)
    if a.ndim == 2:
        return np.argmax(a, axis=1)
    if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        return a
    raise ValueError(f"expected int labels [N] or probabilities [N, K], got {a.dtype} {a.shape}")


def class_coverage(probs_or_labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """How many classes the samples hit, and KL(predicted class histogram || uniform) in nats.

    probs_or_labels: predicted labels [N] or class probabilities [N, K] (argmax taken). A
    generator that covers every class evenly has hit_classes = K and kl_to_uniform = 0; one
    that collapses to a single class has hit_classes = 1 and kl_to_uniform = log K.
    """
    labels = _labels(probs_or_labels)
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be non-empty and lie in [0, {num_classes})")
    histogram = np.bincount(labels, minlength=num_classes) / len(labels)  # [K]
    hit = histogram > 0
    kl = np.sum(histogram[hit] * np.log(histogram[hit] * num_classes))
    return {"hit_classes": int(hit.sum()), "kl_to_uniform": float(kl)}


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))): mean and std over `splits` equal parts of
    class probabilities probs [N, K] (the marginal p(y) is taken within each part)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or not 1 <= splits <= len(probs):
        raise ValueError(f"probs must be [N, K] with N >= splits={splits}, got {probs.shape}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)  # [1, K]
        ratio = np.divide(part, marginal, out=np.ones_like(part), where=part > 0)
        kl = np.sum(part * np.log(ratio), axis=1)  # [n], 0·log 0 = 0
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
