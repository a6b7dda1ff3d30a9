"""Disentanglement scores of latent codes against known generative factors, as in the study of
Locatello et al. 2019 (disentanglement_lib's `unsupervised_study_v1`): the Mutual Information Gap
(Chen et al. 2018), DCI disentanglement, completeness and informativeness (Eastwood & Williams
2018), the BetaVAE score (Higgins et al. 2017), the FactorVAE score (Kim & Mnih 2018), SAP
(Kumar et al. 2018), and modularity and explicitness (Ridgeway & Mozer 2018).

Functions of arrays take codes [N, Z] and int factor indices [N, F]. The `compute_*` functions
follow the study's protocol: they draw their own factors from a `GroundTruth` (a data set's known
generative process, e.g. `SHAPES`) and encode its observations with `represent`, a function from
observations [n, ...] to the encoder's mean codes [n, Z]. `study_scores` runs them all.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from genimg_jax.data.builders import shapes

DEFAULT_BINS = 20  # as in disentanglement_lib's MIG
STUDY_NUM_TRAIN, STUDY_NUM_TEST = 10_000, 5_000  # unsupervised_study_v1's sample counts
# the scores `study_scores` returns, the headline ones first (higher is better for each)
STUDY_SCORES = (
    "mig",
    "dci_disentanglement",
    "beta_vae_score",
    "factor_vae_score",
    "sap",
    "modularity",
    "explicitness",
    "dci_completeness",
    "dci_informativeness",
)
STUDY_BATCH_SIZE = 64  # observations per BetaVAE / FactorVAE training point
PRUNE_STD = 0.05  # FactorVAE: codes whose global std is below this are collapsed
MIN_POINTS = 50  # the fewest samples study_scores draws for any count, whatever its scale
DEFAULT_TREES = {"forest": 50, "gbt": 100}  # DCI: trees per classifier, by estimator
SAP_C = 0.01  # SAP's linear SVMs' C, as disentanglement_lib
ENCODE_BATCH = 256  # observations encoded per call of `represent`

Represent = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """A data set's known generative process: factor i takes `factor_sizes[i]` values,
    `sample_factors(rng, n)` draws factor indices int [n, F], and `observations(factors)`
    renders factor indices [n, F] as float32 observations in [0, 1] (images [n, H, W, C])."""

    factor_sizes: tuple[int, ...]
    sample_factors: Callable[[np.random.Generator, int], np.ndarray]
    observations: Callable[[np.ndarray], np.ndarray]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)


def _shapes_observations(factors: np.ndarray) -> np.ndarray:
    """`shapes` images of factor indices [n, 5]: float32 [n, 64, 64, 1] in [0, 1]."""
    return shapes.render(factors).astype(np.float32) / 255.0


SHAPES = GroundTruth(shapes.FACTOR_SIZES, shapes.sample_factors, _shapes_observations)


def sample_with_fixed_factor(
    gt: GroundTruth, rng: np.random.Generator, n: int, k: int
) -> np.ndarray:
    """n factor rows int [n, F] that share one drawn value of factor k; every other factor of
    every row is drawn independently (the batches of the FactorVAE score)."""
    factors = np.array(gt.sample_factors(rng, n))
    factors[:, k] = factors[0, k]
    return factors


def represent_factors(
    represent: Represent, gt: GroundTruth, factors: np.ndarray, batch: int = ENCODE_BATCH
) -> np.ndarray:
    """Codes [N, Z] of the observations of factor indices [N, F], `batch` rows at a time."""
    factors = np.asarray(factors)
    codes = [
        np.asarray(represent(gt.observations(factors[i : i + batch])))
        for i in range(0, len(factors), batch)
    ]
    return np.concatenate(codes)


def sample_represented(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    num: int,
    batch: int = ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes [num, Z], factors int [num, F]) for `num` factor rows drawn from gt."""
    factors = gt.sample_factors(rng, num)
    return represent_factors(represent, gt, factors, batch), factors


def _sklearn_seed(rng: np.random.Generator) -> int:
    """A scikit-learn random_state drawn from rng."""
    return int(rng.integers(2**31 - 1))


# --------------------------------------------------------------------------------------------
# The study's scikit-learn estimators
#
# disentanglement_lib (2018-19, scikit-learn 0.20/0.21) built its estimators with that
# version's defaults: `LogisticRegression(random_state=...)` for the BetaVAE score and
# `LogisticRegression()` for explicitness, `LinearSVC(C=0.01, class_weight="balanced")` for SAP,
# `GradientBoostingClassifier()` for DCI. Several defaults have changed since (0.22:
# LogisticRegression became multinomial lbfgs; 1.5: LinearSVC's dual="auto" solves the primal
# when samples outnumber features), so the functions below spell out 0.21's values and the
# scores do not move with the installed scikit-learn.


def study_logistic_regression(seed: int):
    """scikit-learn 0.21's `LogisticRegression(random_state=seed)`: one-vs-rest liblinear.

    Its defaults then: solver="liblinear", multi_class="ovr" (the "warn" placeholders of 0.20
    and 0.21 resolve to these), penalty="l2", C=1.0, dual=False, tol=1e-4, max_iter=100,
    fit_intercept=True, intercept_scaling=1 (liblinear regularises the intercept as the weight
    of a constant feature 1), class_weight=None. For each class a binary L2-regularised
    logistic regression of "this class" against the rest; it predicts the class of the largest
    decision value and its probabilities are the classes' sigmoids normalised to sum to 1.
    scikit-learn 1.8 removed multi_class, and its liblinear refuses 3 or more classes, so the
    one-vs-rest is `OneVsRestClassifier` over the binary liblinear model: the same K binary
    fits, predictions and probabilities. (L2 is left to the default: `penalty="l2"` up to 1.7,
    `l1_ratio=0.0` from 1.8, where passing `penalty` is deprecated.)
    """
    from sklearn.linear_model import LogisticRegression  # imported here: slow, seldom needed
    from sklearn.multiclass import OneVsRestClassifier

    binary = LogisticRegression(
        solver="liblinear",
        C=1.0,
        dual=False,
        tol=1e-4,
        max_iter=100,
        fit_intercept=True,
        intercept_scaling=1.0,
        class_weight=None,
        random_state=seed,
    )
    return OneVsRestClassifier(binary)


def study_linear_svc(c: float, seed: int):
    """scikit-learn 0.21's `LinearSVC(C=c, class_weight="balanced", random_state=seed)`, as
    disentanglement_lib's SAP: penalty="l2", loss="squared_hinge", dual=True (liblinear's dual
    coordinate descent; `dual="auto"`, the default from 1.5, would solve the primal here),
    tol=1e-4, max_iter=1000, multi_class="ovr", fit_intercept=True, intercept_scaling=1 (the
    intercept regularised as a constant feature's weight)."""
    from sklearn.svm import LinearSVC  # imported here: slow, seldom needed

    return LinearSVC(
        C=c,
        penalty="l2",
        loss="squared_hinge",
        dual=True,
        tol=1e-4,
        max_iter=1000,
        multi_class="ovr",
        fit_intercept=True,
        intercept_scaling=1,
        class_weight="balanced",
        random_state=seed,
    )


def study_gradient_boosting(num_trees: int, seed: int):
    """scikit-learn 0.21's `GradientBoostingClassifier(n_estimators=num_trees,
    random_state=seed)`, as disentanglement_lib's DCI (100 stages): log-loss ("deviance" then),
    learning_rate=0.1, subsample=1.0, max_depth=3, min_samples_split=2, min_samples_leaf=1,
    max_features=None, no early stopping, no pruning (ccp_alpha=0, added in 0.22). The split
    criterion is left to the default: "friedman_mse" up to 1.8; 1.9 deprecates the parameter
    and grows squared-error trees, whose best split is the same (both rank a split by
    n_l·n_r/(n_l + n_r)·(mean_l - mean_r)²) and whose impurity importances are the same."""
    from sklearn.ensemble import GradientBoostingClassifier  # imported here: slow

    return GradientBoostingClassifier(
        loss="log_loss",
        learning_rate=0.1,
        n_estimators=num_trees,
        subsample=1.0,
        max_depth=3,
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        min_impurity_decrease=0.0,
        max_features=None,
        max_leaf_nodes=None,
        init=None,
        n_iter_no_change=None,
        ccp_alpha=0.0,
        random_state=seed,
    )


# --------------------------------------------------------------------------------------------
# Mutual information and MIG


def discretize(codes: np.ndarray, num_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Each column of codes [N, Z] cut into `num_bins` equal-width bins: int [N, Z].

    The labels are disentanglement_lib's histogram discretisation,
    `np.digitize(x, np.histogram(x, num_bins)[1][:-1])`, minus one (its labels run from 1 to
    num_bins), so mutual information and MIG computed from them are the same.
    """
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


def compute_mig(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    num_train: int = STUDY_NUM_TRAIN,
    num_bins: int = DEFAULT_BINS,
    batch: int = ENCODE_BATCH,
) -> float:
    """MIG (Chen et al. 2018) as the study computes it: `mutual_information_gap` of the codes
    of num_train drawn factor rows, each code cut into num_bins equal-width bins."""
    codes, factors = sample_represented(represent, gt, rng, num_train, batch)
    return mutual_information_gap(codes, factors, num_bins)


# --------------------------------------------------------------------------------------------
# DCI


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


def _tree_classifier(estimator: str, num_trees: int | None, seed: int):
    """A scikit-learn tree-ensemble classifier: "forest" or "gbt" (see `dci_from_split`)."""
    from sklearn.ensemble import RandomForestClassifier  # imported here: slow, seldom needed

    if estimator not in DEFAULT_TREES:
        raise ValueError(f"estimator must be one of {sorted(DEFAULT_TREES)}, got {estimator!r}")
    num_trees = num_trees or DEFAULT_TREES[estimator]
    if estimator == "gbt":
        return study_gradient_boosting(num_trees, seed)
    return RandomForestClassifier(
        n_estimators=num_trees, max_features=None, min_samples_leaf=2, random_state=seed, n_jobs=-1
    )


def dci_from_split(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    estimator: str = "forest",
    num_trees: int | None = None,
    seed: int = 0,
    max_train: int | None = None,
) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018) of
    codes [N, Z] for int factors [N, F]: one classifier per factor learns it from all codes on
    the training set; importance[i, j] = |feature importance| of code i for factor j (then
    `dci_from_importance`); informativeness = the classifiers' mean test accuracy.

    estimator "forest": random forests of num_trees (default 50) trees whose every split
    considers all codes (max_features=None, as Eastwood & Williams' regressors did).
    estimator "gbt": disentanglement_lib's GradientBoostingClassifier with scikit-learn 0.21's
    defaults (`study_gradient_boosting`; num_trees=None: 100 stages). Gradient boosting fits
    one tree per class per stage, one after another: on the study's 10000 train codes (Z=10)
    of the `shapes` factors (3, 6, 40, 32 and 32 classes) it took 293 s on this project's
    2-core machine (8, 16, 103, 83 and 83 s per factor). `max_train` fits on only the first
    max_train training samples (None: all).
    """
    train_codes, train_factors = _check(train_codes, train_factors)
    test_codes, test_factors = _check(test_codes, test_factors)
    train_codes, train_factors = train_codes[:max_train], train_factors[:max_train]
    importance = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    accuracy = []
    for j in range(train_factors.shape[1]):
        model = _tree_classifier(estimator, num_trees, seed)
        model.fit(train_codes, train_factors[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        accuracy.append(model.score(test_codes, test_factors[:, j]))
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness": float(np.mean(accuracy)),
    }


def dci_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    test_fraction: float = 0.25,
    num_trees: int | None = None,
    seed: int = 0,
    estimator: str = "forest",
    max_train: int | None = None,
) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness of codes [N, Z] for factors
    int [N, F] (`dci_from_split`), holding out a random `test_fraction` of the samples.

    The default random forests (Eastwood & Williams 2018) give the same kind of impurity
    importance as disentanglement_lib's gradient-boosted trees (estimator="gbt") far faster.
    """
    codes, factors = _check(codes, factors)
    n_test = round(len(codes) * test_fraction)
    if not 1 <= n_test < len(codes):
        raise ValueError(f"test_fraction={test_fraction} leaves no train or test samples")
    order = np.random.default_rng(seed).permutation(len(codes))
    test, train = order[:n_test], order[n_test:]
    return dci_from_split(
        codes[train],
        factors[train],
        codes[test],
        factors[test],
        estimator=estimator,
        num_trees=num_trees,
        seed=seed,
        max_train=max_train,
    )


def compute_dci(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    num_train: int = STUDY_NUM_TRAIN,
    num_test: int = STUDY_NUM_TEST,
    max_train: int | None = None,
    batch: int = ENCODE_BATCH,
) -> dict[str, float]:
    """DCI as the study computes it: gradient-boosted trees (`dci_from_split`, "gbt") fitted
    on the codes of num_train drawn factor rows, tested on num_test fresh ones."""
    train = sample_represented(represent, gt, rng, num_train, batch)
    test = sample_represented(represent, gt, rng, num_test, batch)
    return dci_from_split(
        *train, *test, estimator="gbt", seed=_sklearn_seed(rng), max_train=max_train
    )


# --------------------------------------------------------------------------------------------
# BetaVAE score


def beta_vae_features(codes1: np.ndarray, codes2: np.ndarray) -> np.ndarray:
    """The BetaVAE score's feature (Higgins et al. 2017) of a batch of observation pairs that
    share one factor: the mean over the batch of |z1 - z2|; codes [..., B, Z] -> [..., Z]."""
    return np.mean(np.abs(np.asarray(codes1, np.float64) - np.asarray(codes2)), axis=-2)


def beta_vae_points(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    num_points: int,
    *,
    batch_size: int = STUDY_BATCH_SIZE,
    batch: int = ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """num_points labelled BetaVAE features (features [P, Z], labels int [P]): each label k is
    drawn uniformly; its feature comes from batch_size pairs of factor rows drawn
    independently except that the two rows of a pair share the value of factor k."""
    labels = rng.integers(gt.num_factors, size=num_points)
    shape = (num_points, batch_size, gt.num_factors)
    first = np.array(gt.sample_factors(rng, num_points * batch_size)).reshape(shape)
    second = np.array(gt.sample_factors(rng, num_points * batch_size)).reshape(shape)
    points = np.arange(num_points)
    second[points, :, labels] = first[points, :, labels]
    factors = np.concatenate([first, second]).reshape(-1, gt.num_factors)
    codes = represent_factors(represent, gt, factors, batch).reshape(2, num_points, batch_size, -1)
    return beta_vae_features(codes[0], codes[1]), labels


def compute_beta_vae(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    batch_size: int = STUDY_BATCH_SIZE,
    num_train: int = STUDY_NUM_TRAIN,
    num_eval: int = STUDY_NUM_TEST,
    batch: int = ENCODE_BATCH,
) -> dict[str, float]:
    """The BetaVAE score (Higgins et al. 2017) as disentanglement_lib computes it:
    `beta_vae_accuracy` of num_train `beta_vae_points` and num_eval fresh ones,
    {"train_accuracy", "eval_accuracy"}. The score is eval_accuracy; chance is 1/F."""
    train = beta_vae_points(represent, gt, rng, num_train, batch_size=batch_size, batch=batch)
    seed = _sklearn_seed(rng)
    evaluation = beta_vae_points(represent, gt, rng, num_eval, batch_size=batch_size, batch=batch)
    return beta_vae_accuracy(*train, *evaluation, seed=seed)


def beta_vae_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """The BetaVAE score's classifier: the study's logistic regression
    (`study_logistic_regression`, one-vs-rest liblinear) learns the shared factor from
    features [P, Z] with labels int [P]; {"train_accuracy", "eval_accuracy"} of its
    predictions on the training and the evaluation points."""
    model = study_logistic_regression(seed).fit(train_features, train_labels)
    return {
        "train_accuracy": float(model.score(train_features, train_labels)),
        "eval_accuracy": float(model.score(eval_features, eval_labels)),
    }


# --------------------------------------------------------------------------------------------
# FactorVAE score


def factor_vae_votes(
    codes: np.ndarray,
    labels: np.ndarray,
    global_std: np.ndarray,
    active: np.ndarray,
    num_factors: int,
) -> np.ndarray:
    """The FactorVAE score's vote table (Kim & Mnih 2018): int [F, Z] counts of (factor, code).

    codes [P, B, Z]: P batches of B codes whose batch p shares the value of factor labels[p].
    Each batch votes (labels[p], d) for the active code d (active: bool [Z]) whose values,
    divided by their global std [Z], have the smallest sample variance within the batch.
    """
    dims = np.flatnonzero(active)
    codes = np.asarray(codes, np.float64)[..., dims] / np.asarray(global_std)[dims]
    winners = dims[np.argmin(codes.var(axis=1, ddof=1), axis=1)]  # [P]
    votes = np.zeros((num_factors, len(active)), np.int64)
    np.add.at(votes, (np.asarray(labels), winners), 1)
    return votes


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float, float]:
    """(train, eval) accuracy of the FactorVAE score's majority-vote classifier: each code
    predicts the factor it got the most train votes for (ties: the lowest factor index); the
    accuracy on a vote table [F, Z] is the share of its votes whose factor is that prediction."""
    prediction = np.argmax(train_votes, axis=0)  # [Z]
    codes = np.arange(train_votes.shape[1])

    def accuracy(votes: np.ndarray) -> float:
        return float(votes[prediction, codes].sum() / votes.sum())

    return accuracy(train_votes), accuracy(eval_votes)


def _factor_vae_vote_table(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    num_points: int,
    batch_size: int,
    global_std: np.ndarray,
    active: np.ndarray,
    batch: int,
) -> np.ndarray:
    """`factor_vae_votes` of num_points batches, each sharing a uniformly drawn factor."""
    labels = rng.integers(gt.num_factors, size=num_points)
    factors = np.concatenate([sample_with_fixed_factor(gt, rng, batch_size, k) for k in labels])
    codes = represent_factors(represent, gt, factors, batch).reshape(num_points, batch_size, -1)
    return factor_vae_votes(codes, labels, global_std, active, gt.num_factors)


def compute_factor_vae(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    batch_size: int = STUDY_BATCH_SIZE,
    num_train: int = STUDY_NUM_TRAIN,
    num_eval: int = STUDY_NUM_TEST,
    num_variance_estimate: int = STUDY_NUM_TRAIN,
    prune_std: float = PRUNE_STD,
    batch: int = ENCODE_BATCH,
) -> dict[str, float]:
    """The FactorVAE score (Kim & Mnih 2018) as disentanglement_lib computes it.

    The global std (ddof=1) of each code over num_variance_estimate drawn observations; codes
    with std < prune_std are collapsed and never vote (disentanglement_lib's
    `prune_dims.threshold = 0.05` is compared with the std, i.e. a variance below 0.0025).
    `factor_vae_votes` of num_train batches of batch_size rows sharing a uniformly drawn
    factor train `majority_vote_accuracy`, evaluated on num_eval fresh batches:
    {"train_accuracy", "eval_accuracy", "num_active_dims"}; with no active code both
    accuracies are 0. The score is eval_accuracy; chance is about 1/F.
    """
    codes, _ = sample_represented(represent, gt, rng, num_variance_estimate, batch)
    global_std = np.std(np.asarray(codes, np.float64), axis=0, ddof=1)
    active = global_std >= prune_std
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train, evaluation = (
        _factor_vae_vote_table(represent, gt, rng, n, batch_size, global_std, active, batch)
        for n in (num_train, num_eval)
    )
    train_accuracy, eval_accuracy = majority_vote_accuracy(train, evaluation)
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": eval_accuracy,
        "num_active_dims": int(active.sum()),
    }


# --------------------------------------------------------------------------------------------
# SAP


def sap_score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    seed: int = 0,
) -> np.ndarray:
    """SAP's score matrix [Z, F] for discrete factors (Kumar et al. 2018), as
    disentanglement_lib: entry (i, j) is the test accuracy of a linear SVM
    (`study_linear_svc`: scikit-learn 0.21's LinearSVC, C=0.01, balanced class weights)
    trained to predict factor j from code i alone."""
    train_codes, train_factors = _check(train_codes, train_factors)
    test_codes, test_factors = _check(test_codes, test_factors)
    scores = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    for i, j in np.ndindex(scores.shape):
        svm = study_linear_svc(SAP_C, seed)
        svm.fit(train_codes[:, [i]], train_factors[:, j])
        scores[i, j] = svm.score(test_codes[:, [i]], test_factors[:, j])
    return scores


def sap_from_score_matrix(scores: np.ndarray) -> float:
    """SAP (Kumar et al. 2018): the mean over factors (columns of the score matrix [Z, F]) of
    the gap between the largest and the second-largest score."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or len(scores) < 2:
        raise ValueError(f"SAP needs a score matrix [Z, F] with Z >= 2, got {scores.shape}")
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def compute_sap(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    num_train: int = STUDY_NUM_TRAIN,
    num_test: int = STUDY_NUM_TEST,
    batch: int = ENCODE_BATCH,
) -> float:
    """SAP as the study computes it: `sap_score_matrix` trained on the codes of num_train
    drawn factor rows and tested on num_test fresh ones, then `sap_from_score_matrix`."""
    train = sample_represented(represent, gt, rng, num_train, batch)
    test = sample_represented(represent, gt, rng, num_test, batch)
    return sap_from_score_matrix(sap_score_matrix(*train, *test, seed=_sklearn_seed(rng)))


# --------------------------------------------------------------------------------------------
# Modularity and explicitness


def modularity(mutual_information: np.ndarray) -> float:
    """Modularity (Ridgeway & Mozer 2018) of a mutual-information matrix θ [Z, F] (F >= 2).

    Per code i: 1 - Σ_j (θ_ij - t_ij)² / (θ_i,max² (F - 1)), where the template t_i keeps only
    the code's largest entry θ_i,max and is 0 elsewhere; a code with no information about any
    factor scores 0 (as in disentanglement_lib). The mean over codes.
    """
    theta = np.asarray(mutual_information, np.float64)
    if theta.ndim != 2 or theta.shape[1] < 2:
        raise ValueError(f"modularity needs an MI matrix [Z, F] with F >= 2, got {theta.shape}")
    squared = np.square(theta)
    top = squared.max(axis=1)
    deviation = squared.sum(axis=1) - top  # the template matches the largest entry exactly
    scaled = np.divide(deviation, top * (theta.shape[1] - 1), out=np.ones_like(top), where=top > 0)
    return float(np.mean(1.0 - scaled))


def _one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of the ROC AUC of probabilities[:, c] for "label is classes[c]",
    leaving out classes that are absent from labels or are all of them."""
    from sklearn.metrics import roc_auc_score  # imported here: slow, seldom needed

    aucs = [
        roc_auc_score(labels == c, probabilities[:, i])
        for i, c in enumerate(classes)
        if 0 < np.sum(labels == c) < len(labels)
    ]
    return float(np.mean(aucs))


def explicitness(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[float, float]:
    """Explicitness (Ridgeway & Mozer 2018), as disentanglement_lib: (train, test) mean over
    factors of the one-vs-rest ROC AUC, averaged over the factor's classes, of the study's
    logistic regression (`study_logistic_regression`: disentanglement_lib's
    `LogisticRegression()` under scikit-learn 0.21, one-vs-rest liblinear) that predicts the
    factor from all codes.

    Codes are standardised with the training mean and std (constant codes left at 0). Classes
    absent from the set being scored are left out of its average.
    """
    train_codes, train_factors = _check(train_codes, train_factors)
    test_codes, test_factors = _check(test_codes, test_factors)
    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (train_codes - mean) / std, (test_codes - mean) / std
    train_auc, test_auc = [], []
    for j in range(train_factors.shape[1]):
        model = study_logistic_regression(seed).fit(x_train, train_factors[:, j])
        for auc, x, y in ((train_auc, x_train, train_factors), (test_auc, x_test, test_factors)):
            auc.append(_one_vs_rest_auc(y[:, j], model.predict_proba(x), model.classes_))
    return float(np.mean(train_auc)), float(np.mean(test_auc))


def compute_modularity_explicitness(
    represent: Represent,
    gt: GroundTruth,
    rng: np.random.Generator,
    *,
    num_train: int = STUDY_NUM_TRAIN,
    num_test: int = STUDY_NUM_TEST,
    num_bins: int = DEFAULT_BINS,
    batch: int = ENCODE_BATCH,
) -> dict[str, float]:
    """Modularity and explicitness as the study computes them: `modularity` of the mutual
    information between the num_bins-bin `discretize`d codes of num_train drawn factor rows
    and their factors; `explicitness` trained on those, tested on num_test fresh rows.
    {"modularity", "explicitness_train", "explicitness_test"}."""
    train = sample_represented(represent, gt, rng, num_train, batch)
    test = sample_represented(represent, gt, rng, num_test, batch)
    mi = mutual_information_matrix(discretize(train[0], num_bins), train[1])
    train_auc, test_auc = explicitness(*train, *test, seed=_sklearn_seed(rng))
    return {
        "modularity": modularity(mi),
        "explicitness_train": train_auc,
        "explicitness_test": test_auc,
    }


# --------------------------------------------------------------------------------------------
# The study


def study_scores(
    represent: Represent,
    gt: GroundTruth,
    seed: int,
    *,
    scale: float = 1.0,
    dci_max_train: int | None = None,
    batch: int = ENCODE_BATCH,
) -> dict[str, float]:
    """The disentanglement scores of Locatello et al. 2019 (unsupervised_study_v1) of the
    representation `represent` (observations -> mean codes [n, Z]) of a ground truth.

    Each metric draws its own samples with its own generator from `seed`, so the result is a
    pure function of (represent, gt, seed, scale, dci_max_train): MIG on 10000 codes; DCI
    (gradient-boosted trees; `dci_max_train` caps their training set, see `dci_from_split`),
    SAP, modularity and explicitness (test AUC) each on 10000 train and 5000 test codes; the
    BetaVAE score (eval accuracy) on 10000 + 5000 points of 64 pairs; the FactorVAE score
    (eval accuracy) on 10000 codes for the variances and 10000 + 5000 batches of 64. Every
    count but the batches of 64 is multiplied by `scale` (at least MIN_POINTS). At scale 1
    that is about 2.9 million observations to encode, 1.9 million of them for the BetaVAE
    score: rendering that many `shapes` images alone takes about 10 minutes here (5000 a
    second), and the DCI trees about 5 more.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")

    def count(n: int) -> int:
        return max(MIN_POINTS, round(n * scale))

    train, test = count(STUDY_NUM_TRAIN), count(STUDY_NUM_TEST)
    mig_rng, dci_rng, beta_rng, factor_rng, sap_rng, modularity_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    mig = compute_mig(represent, gt, mig_rng, num_train=train, batch=batch)
    dci = compute_dci(
        represent, gt, dci_rng, num_train=train, num_test=test, max_train=dci_max_train, batch=batch
    )
    beta_vae = compute_beta_vae(
        represent, gt, beta_rng, num_train=train, num_eval=test, batch=batch
    )
    sizes = {"num_train": train, "num_eval": test, "batch": batch}
    factor_vae = compute_factor_vae(represent, gt, factor_rng, num_variance_estimate=train, **sizes)
    sap = compute_sap(represent, gt, sap_rng, num_train=train, num_test=test, batch=batch)
    mod_exp = compute_modularity_explicitness(
        represent, gt, modularity_rng, num_train=train, num_test=test, batch=batch
    )
    return {
        "mig": mig,
        **{f"dci_{k}": dci[k] for k in ("disentanglement", "completeness", "informativeness")},
        "beta_vae_score": beta_vae["eval_accuracy"],
        "factor_vae_score": factor_vae["eval_accuracy"],
        "sap": sap,
        "modularity": mod_exp["modularity"],
        "explicitness": mod_exp["explicitness_test"],
    }
