"""Distances between two sets of features: Fréchet distance (FID) and kernel distance (KID).

Both run once per evaluation on the host in float64 NumPy: the features come from a jitted
network, and float64 keeps the large cancelling sums of these statistics exact enough.
"""

import numpy as np

DEFAULT_KID_SUBSET_SIZE = 1000  # as in Bińkowski et al. 2018 and torch-fidelity
DEFAULT_KID_SUBSETS = 100


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D], in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must have shape [N >= 2, D], got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix [D, D]."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ1 Σ2)^½) for covariances Σ1, Σ2 [D, D].

    Σ1Σ2 is similar to the symmetric PSD matrix Σ1^½ Σ2 Σ1^½, whose eigenvalues are real and
    non-negative: summing their square roots avoids the complex `sqrtm` of a non-symmetric
    matrix (and its tiny imaginary parts), and works for singular covariances (N < D) too.
    """
    root1 = _sqrtm_psd(np.asarray(sigma1, np.float64))
    inner = root1 @ np.asarray(sigma2, np.float64) @ root1
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||μ1 - μ2||² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½): the Fréchet distance of two Gaussians."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape[0] != mu1.size:
        raise ValueError(
            f"means {mu1.shape}, {mu2.shape} and covariances {sigma1.shape}, {sigma2.shape} "
            "must be [D] and [D, D] for one D"
        )
    diff = mu1 - mu2
    trace = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace)


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance (FID when the features are Inception's) of two feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / d + 1)³ for rows of x [N, D] and y [M, D]: [N, M]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimate of MMD² with the cubic polynomial kernel: x [m, D], y [n, D]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))  # mean over pairs i != j
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = DEFAULT_KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std over random subsets of the unbiased MMD²
    between features1 [N1, D] and features2 [N2, D], cubic polynomial kernel.

    Each subset draws `subset_size` rows of each set without replacement (default:
    min(1000, N1, N2)).
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N1, D] and [N2, D], got {f1.shape} and {f2.shape}")
    largest = min(len(f1), len(f2))
    size = min(DEFAULT_KID_SUBSET_SIZE, largest) if subset_size is None else subset_size
    if not 2 <= size <= largest:
        raise ValueError(
            f"subset_size={size} must lie in [2, {largest}] (the smaller set's size); "
            "pass a smaller subset_size or more features"
        )
    if num_subsets < 1:
        raise ValueError(f"num_subsets={num_subsets} must be >= 1")
    rng = np.random.default_rng(seed)
    values = [
        unbiased_mmd2(
            f1[rng.choice(len(f1), size, replace=False)],
            f2[rng.choice(len(f2), size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
