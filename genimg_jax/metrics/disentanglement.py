"""Disentanglement scores of latent codes against known generative factors: the Mutual
Information Gap (Chen et al. 2018) and DCI disentanglement, completeness and informativeness
(Eastwood & Williams 2018), plus a helper that renders `shapes` images and encodes them."""

from collections.abc import Callable

import numpy as np

from genimg_jax.data.builders import shapes

DEFAULT_BINS = 20  # as in disentanglement_lib's MIG


def discretize(codes: np.ndarray, num_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Each column of codes [N, Z] cut into `num_bins` equal-width bins: int [N, Z]."""
    codes = np.asarray(codes, np.float64)
    out = np.empty(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], num_bins)
        out[:, j] = np.clip(np.digitize(codes[:, j], edges[1:-1]), 0, num_bins - 1)
    return out


def _entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution proportional to counts (zeros allowed)."""
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of the empirical joint distribution of two int label vectors [N]."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.bincount(a * (b.max() + 1) + b).astype(np.float64)  # flat [|a|·|b|]
    joint = np.pad(joint, (0, (a.max() + 1) * (b.max() + 1) - len(joint)))
    joint = joint.reshape(a.max() + 1, b.max() + 1)
    return _entropy(joint.sum(axis=1)) + _entropy(joint.sum(axis=0)) - _entropy(joint.ravel())


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_i; factor_j) for int codes [N, Z] and int factors [N, F]: [Z, F] nats."""
    return np.array(
        [
            [
                discrete_mutual_information(discrete_codes[:, i], factors[:, j])
                for j in range(factors.shape[1])
            ]
            for i in range(discrete_codes.shape[1])
        ]
    )


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(
            f"codes [N, Z] and factors [N, F] must pair up; got {codes.shape}, {factors.shape}"
        )
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be int indices, got {factors.dtype}")
    return codes, factors


def mutual_information_gap(
    codes: np.ndarray, factors: np.ndarray, num_bins: int = DEFAULT_BINS
) -> float:
    """MIG: the mean over factors of (largest - second-largest I(code; factor)) / H(factor).

    codes: continuous [N, Z], cut into `num_bins` bins per dimension; factors: int [N, F].
    Factors that never vary (entropy 0) are left out of the mean.
    """
    codes, factors = _check(codes, factors)
    mi = mutual_information_matrix(discretize(codes, num_bins), factors)  # [Z, F]
    entropy = np.array([discrete_mutual_information(f, f) for f in factors.T])  # [F]
    top = np.sort(mi, axis=0)[::-1]  # [Z, F], largest first
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    varying = entropy > 0
    if not varying.any():
        raise ValueError("every factor is constant: MIG is undefined")
    return float(np.mean((top[0] - second)[varying] / entropy[varying]))


def _one_minus_normalized_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """1 - H(p)/log(n) along `axis` (n = its length) of non-negative weights, 0·log 0 = 0."""
    n = p.shape[axis]
    if n == 1:
        return np.ones(np.delete(p.shape, axis))
    total = p.sum(axis=axis, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / n), where=total > 0)
    plogp = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return 1.0 + plogp.sum(axis=axis) / np.log(n)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """DCI (disentanglement, completeness) from a non-negative importance matrix [Z, F]
    (how much code i matters for predicting factor j), as in Eastwood & Williams 2018.

    Disentanglement: 1 - entropy of each code's importance over factors (base F), weighted by
    the code's share of the total; completeness: the same over codes (base Z) per factor.
    """
    r = np.asarray(importance, np.float64)
    if r.ndim != 2 or (r < 0).any():
        raise ValueError(f"importance must be a non-negative [Z, F] matrix, got {r.shape}")
    weights = r if r.sum() > 0 else np.ones_like(r)
    per_code = _one_minus_normalized_entropy(r, axis=1)  # [Z]
    per_factor = _one_minus_normalized_entropy(r, axis=0)  # [F]
    disentanglement = np.sum(per_code * weights.sum(axis=1) / weights.sum())
    completeness = np.sum(per_factor * weights.sum(axis=0) / weights.sum())
    return float(disentanglement), float(completeness)


def dci_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    test_fraction: float = 0.25,
    num_trees: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness of codes [N, Z] for factors
    int [N, F], with importance from one random-forest classifier per factor.

    Eastwood & Williams 2018 use random forests whose every split considers all codes
    (max_features=None, as their regressors did); disentanglement_lib uses gradient-boosted
    trees, which give the same kind of impurity importance far more slowly. Informativeness is
    the classifiers' mean accuracy on a held-out `test_fraction` of the samples.
    """
    from sklearn.ensemble import RandomForestClassifier  # imported here: slow, seldom needed

    codes, factors = _check(codes, factors)
    n_test = round(len(codes) * test_fraction)
    if not 1 <= n_test < len(codes):
        raise ValueError(f"test_fraction={test_fraction} leaves no train or test samples")
    order = np.random.default_rng(seed).permutation(len(codes))
    test, train = order[:n_test], order[n_test:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = []
    for j in range(factors.shape[1]):
        forest = RandomForestClassifier(
            n_estimators=num_trees,
            max_features=None,
            min_samples_leaf=2,
            random_state=seed,
            n_jobs=-1,
        )
        forest.fit(codes[train], factors[train, j])
        importance[:, j] = forest.feature_importances_
        accuracy.append(forest.score(codes[test], factors[test, j]))
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness": float(np.mean(accuracy)),
    }


def encode_for_factors(
    encode_fn: Callable[[np.ndarray], np.ndarray], factors: np.ndarray, batch: int = 256
) -> np.ndarray:
    """Renders `shapes` images for factor indices int [N, 5] and encodes them, `batch` at a
    time: encode_fn maps float images [n, 64, 64, 1] in [0, 1] to mean codes [n, Z] -> [N, Z]."""
    factors = np.asarray(factors)
    codes = [
        np.asarray(encode_fn(shapes.render(factors[i : i + batch]).astype(np.float32) / 255.0))
        for i in range(0, len(factors), batch)
    ]
    return np.concatenate(codes)


def sample_codes(
    encode_fn: Callable[[np.ndarray], np.ndarray], num: int, seed: int = 0, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(codes [num, Z], factors int [num, 5]) for `num` uniformly drawn `shapes` factors."""
    factors = shapes.sample_factors(np.random.default_rng(seed), num)
    return encode_for_factors(encode_fn, factors, batch), factors
