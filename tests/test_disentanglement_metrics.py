"""The disentanglement metrics of Locatello et al. 2019 against independent references: each
metric's definition written out with NumPy loops, disentanglement_lib's discretisation, known
answers on a synthetic ground truth whose observations are its factors, and determinism."""

import os

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import tensorflow_datasets as tfds
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from genimg_jax.data.builders import shapes
from genimg_jax.families.vae import ground_truth
from genimg_jax.metrics import disentanglement as dis

SIZES = (3, 4, 5, 6)
WEIGHTS = np.array([1.0, 2.0, 0.5, 3.0])
SCALE = 0.05  # of the study's sample counts: 500 train and 250 test points
STUDY_KEYS = {
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "beta_vae_score",
    "factor_vae_score",
    "sap",
    "modularity",
    "explicitness",
}


def _uniform_sampler(sizes):
    def sample(rng, n):
        return np.stack([rng.integers(0, size, n) for size in sizes], axis=1)

    return sample


def _as_float(factors):
    return np.asarray(factors, np.float32)


TOY = dis.GroundTruth(SIZES, _uniform_sampler(SIZES), _as_float)  # observations = factors
BINARY = dis.GroundTruth((2, 2, 2), _uniform_sampler((2, 2, 2)), _as_float)


def _scaled_copy(x):
    return x * WEIGHTS[: x.shape[1]]


def _permuted_copy(x):
    return x[:, [2, 0, 3, 1]] * WEIGHTS


def _noise_representation(seed):
    """Codes [n, 4] drawn independently of the observations."""
    rng = np.random.default_rng(seed)
    return lambda x: rng.standard_normal((len(x), 4))


def _entangled(x):
    """A fixed, deterministic mixing of the factors."""
    mixing = np.array([[1.0, 0.5, 0, 0], [0, 1.0, 0.3, 0], [0.2, 0, 1.0, 0], [0, 0, 0.4, 1.0]])
    return x @ mixing + 0.3 * np.sin(3 * x)


# --------------------------------------------------------------------------------------------
# Ground truth


def test_shapes_ground_truth_renders_images_in_unit_range():
    assert dis.SHAPES.factor_sizes == shapes.FACTOR_SIZES and dis.SHAPES.num_factors == 5
    factors = dis.SHAPES.sample_factors(np.random.default_rng(0), 6)
    images = dis.SHAPES.observations(factors)
    assert images.dtype == np.float32 and images.shape == (6, 64, 64, 1)
    np.testing.assert_array_equal(images, shapes.render(factors) / np.float32(255))


def test_sample_with_fixed_factor_shares_only_factor_k():
    rng = np.random.default_rng(1)
    for k in range(5):
        factors = dis.sample_with_fixed_factor(dis.SHAPES, rng, 200, k)
        assert factors.shape == (200, 5)
        assert ((0 <= factors) & (factors < np.array(shapes.FACTOR_SIZES))).all()
        unique = [len(np.unique(column)) for column in factors.T]
        assert unique[k] == 1
        assert all(u > 1 for j, u in enumerate(unique) if j != k)
    values = [dis.sample_with_fixed_factor(TOY, rng, 2, 3)[0, 3] for _ in range(300)]
    assert set(values) == set(range(SIZES[3]))  # the shared value is itself drawn


# --------------------------------------------------------------------------------------------
# MIG


def test_discretize_is_disentanglement_lib_histogram_labels_minus_one():
    rng = np.random.default_rng(2)
    codes = np.stack(
        [rng.standard_normal(500), rng.standard_cauchy(500), np.full(500, 0.3), np.arange(500.0)],
        axis=1,
    )
    for bins in (7, 20):
        reference = np.stack(
            [np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T], axis=1
        )
        np.testing.assert_array_equal(dis.discretize(codes, bins), reference - 1)


# --------------------------------------------------------------------------------------------
# The study's scikit-learn estimators (0.21's defaults, which disentanglement_lib ran on)


def _with_bias(x):
    """x [N, D] with a constant feature 1 appended: liblinear's intercept (intercept_scaling=1)
    is that feature's weight, regularised like the others."""
    return np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)


def _minimize(objective, dim):
    result = scipy.optimize.minimize(
        objective, np.zeros(dim), jac=True, method="BFGS", options={"gtol": 1e-11}
    )
    return result.x


def _binary_logistic_optimum(x, positive, c=1.0):
    """argmin over w = [weights, intercept] of ½|w|² + c Σ log(1 + exp(-s·w·[x, 1])),
    s = ±1: liblinear's L2-regularised logistic regression, intercept regularised too."""
    xa, s = _with_bias(x), np.where(positive, 1.0, -1.0)

    def objective(w):
        margin = s * (xa @ w)
        loss = 0.5 * w @ w + c * np.sum(np.logaddexp(0.0, -margin))
        return loss, w - c * xa.T @ (s * scipy.special.expit(-margin))

    return _minimize(objective, xa.shape[1])


def _classes_on_a_line(rng, n, num_classes=5):
    """Features [n, 2] of classes strung along a line away from the origin (and a noise
    feature): one-vs-rest cannot cut an inner class out with one hyperplane per class, a
    multinomial model can, so scikit-learn 0.21's LogisticRegression and today's default score
    far apart (on 10 seeds the multinomial's accuracy was 0.18 to 0.30 higher)."""
    labels = rng.integers(0, num_classes, n)
    features = np.stack([2 + 2 * labels + rng.normal(0, 0.5, n), rng.normal(0, 1, n)], axis=1)
    return features, labels


def test_study_logistic_regression_is_one_vs_rest_liblinear_of_scikit_learn_0_21():
    """disentanglement_lib's LogisticRegression() of scikit-learn 0.20/0.21: per class, the
    optimum of a binary L2 logistic loss (C=1, intercept regularised) against the rest; the
    class of the largest decision value; sigmoids normalised to sum to 1. Today's default
    (multinomial lbfgs) scores the BetaVAE classifier far higher on these points."""
    rng = np.random.default_rng(20)
    x_train, y_train = _classes_on_a_line(rng, 300)
    x_test, y_test = _classes_on_a_line(rng, 300)

    # the BetaVAE score's classifier has the accuracies of a one-vs-rest made by hand: K binary
    # liblinear fits, each class predicted where its decision value is the largest
    binaries = [
        LogisticRegression(solver="liblinear", random_state=0).fit(x_train, y_train == k)
        for k in range(5)
    ]

    def one_vs_rest_accuracy(x, y):
        decisions = np.stack([b.decision_function(x) for b in binaries], axis=1)
        return np.mean(np.argmax(decisions, axis=1) == y)

    got = dis.beta_vae_accuracy(x_train, y_train, x_test, y_test, seed=0)
    assert got == {
        "train_accuracy": one_vs_rest_accuracy(x_train, y_train),
        "eval_accuracy": one_vs_rest_accuracy(x_test, y_test),
    }
    multinomial = LogisticRegression(solver="lbfgs", max_iter=1000).fit(x_train, y_train)
    # 0.95 against 0.67 here: the inner classes are seldom the one-vs-rest argmax
    assert multinomial.score(x_test, y_test) - got["eval_accuracy"] > 0.1

    # each binary fit is the optimum of liblinear's objective (by BFGS here). liblinear stops
    # at tol=1e-4 of its gradient norm: its weights were within 6e-4 of the optimum on the
    # seeds tried; with 2e-3 per weight a decision value is within 2e-3·Σ|[x, 1]|
    model = dis.study_logistic_regression(seed=0).fit(x_train, y_train)
    optimum = np.array([_binary_logistic_optimum(x_train, y_train == k) for k in range(5)])
    decision = _with_bias(x_test) @ optimum.T  # [N, 5]
    slack = 2e-3 * np.abs(_with_bias(x_test)).sum(axis=1)  # [N]
    assert np.all(np.abs(model.decision_function(x_test) - decision) <= slack[:, None])
    # so the predictions agree wherever the optimum's top two decisions are more than twice
    # that apart: all but a few points
    top_two = np.sort(decision, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * slack
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(model.predict(x_test)[clear], np.argmax(decision, axis=1)[clear])
    sigmoid = scipy.special.expit(decision)
    np.testing.assert_allclose(
        model.predict_proba(x_test), sigmoid / sigmoid.sum(1, keepdims=True), atol=1e-3
    )


def _binary_squared_hinge_optimum(x, positive, c, weight):
    """argmin over w = [weight, intercept] of ½|w|² + c Σ weight_i max(0, 1 - s·w·[x, 1])²."""
    xa, s = _with_bias(x[:, None]), np.where(positive, 1.0, -1.0)

    def objective(w):
        hinge = np.maximum(0.0, 1.0 - s * (xa @ w))
        loss = 0.5 * w @ w + c * np.sum(weight * hinge**2)
        return loss, w - 2 * c * xa.T @ (weight * hinge * s)

    return _minimize(objective, 2)


def _sap_svm_reference(x, y, c=0.01):
    """(classes, [weight, intercept] per binary problem) of scikit-learn 0.21's
    LinearSVC(C=c, class_weight="balanced"): squared hinge, L2 with the intercept regularised;
    the balanced weight of class k is n / (K·n_k). Two classes: one problem, classes[1]
    positive, each sample weighted by its class; more: one per class against the rest, and
    liblinear weights only the positive side (the rest keeps weight 1)."""
    classes = np.unique(y)
    balanced = {k: len(y) / (len(classes) * np.sum(y == k)) for k in classes}
    if len(classes) == 2:
        weight = np.array([balanced[k] for k in y])
        return classes, _binary_squared_hinge_optimum(x, y == classes[1], c, weight)[None]
    return classes, np.array(
        [
            _binary_squared_hinge_optimum(x, y == k, c, np.where(y == k, balanced[k], 1.0))
            for k in classes
        ]
    )


def test_sap_svms_are_the_squared_hinge_optimum_of_scikit_learn_0_21s_linear_svc():
    rng = np.random.default_rng(21)
    factors = np.stack([rng.integers(0, 3, 800), rng.integers(0, 2, 800), rng.integers(0, 5, 800)])
    factors = factors.T
    codes = np.stack(
        [
            factors[:, 0] + rng.normal(0, 0.7, 800),
            0.5 * factors[:, 1] + factors[:, 2] + rng.normal(0, 1, 800),
            rng.normal(0, 1, 800) + 3,
        ],
        axis=1,
    )
    train, test = slice(0, 500), slice(500, None)
    expected = np.zeros((3, 3))
    for i, j in np.ndindex(3, 3):
        classes, optimum = _sap_svm_reference(codes[train, i], factors[train, j])
        svm = dis.study_linear_svc(dis.SAP_C, seed=0).fit(codes[train][:, [i]], factors[train, j])
        fitted = np.concatenate([svm.coef_, svm.intercept_[:, None]], axis=1)
        np.testing.assert_allclose(fitted, optimum, atol=1e-4)
        decision = _with_bias(codes[test][:, [i]]) @ optimum.T
        if len(classes) == 2:
            predicted = classes[(decision[:, 0] > 0).astype(int)]
        else:
            predicted = classes[np.argmax(decision, axis=1)]
        expected[i, j] = np.mean(predicted == factors[test, j])
    got = dis.sap_score_matrix(codes[train], factors[train], codes[test], factors[test], seed=0)
    np.testing.assert_array_equal(got, expected)
    assert svm.get_params()["dual"] is True  # 0.21's solver, not 1.5's dual="auto"


def test_dci_gradient_boosting_has_scikit_learn_0_21s_defaults():
    params = dis.study_gradient_boosting(100, seed=5).get_params()
    defaults_0_21 = {  # GradientBoostingClassifier() of 0.21, loss "deviance" renamed log_loss
        "loss": "log_loss",
        "learning_rate": 0.1,
        "n_estimators": 100,
        "subsample": 1.0,
        "max_depth": 3,
        "min_samples_split": 2,
        "min_samples_leaf": 1,
        "min_weight_fraction_leaf": 0.0,
        "min_impurity_decrease": 0.0,
        "max_features": None,
        "max_leaf_nodes": None,
        "init": None,
        "n_iter_no_change": None,
        "ccp_alpha": 0.0,
        "random_state": 5,
    }
    assert {k: params[k] for k in defaults_0_21} == defaults_0_21


# --------------------------------------------------------------------------------------------
# BetaVAE score


def test_beta_vae_features_are_mean_absolute_differences():
    rng = np.random.default_rng(3)
    z1, z2 = rng.standard_normal((2, 7, 5, 3))  # P=7 points of B=5 pairs of Z=3 codes
    expected = np.zeros((7, 3))
    for p in range(7):
        for z in range(3):
            expected[p, z] = sum(abs(z1[p, b, z] - z2[p, b, z]) for b in range(5)) / 5
    np.testing.assert_allclose(dis.beta_vae_features(z1, z2), expected, rtol=1e-12)


def test_beta_vae_points_encode_pairs_that_share_the_labelled_factor():
    seen = []

    def recording(x):
        seen.append(x.copy())
        return _scaled_copy(x)

    features, labels = dis.beta_vae_points(
        recording, TOY, np.random.default_rng(4), 40, batch_size=16, batch=100
    )
    observed = np.concatenate(seen).reshape(2, 40, 16, 4)  # first rows, then their partners
    first, second = observed
    for p, k in enumerate(labels):
        np.testing.assert_array_equal(first[p, :, k], second[p, :, k])
        others = np.delete(np.arange(4), k)
        assert np.mean(first[p][:, others] != second[p][:, others]) > 0.5
        expected = np.abs(_scaled_copy(first[p]) - _scaled_copy(second[p])).mean(axis=0)
        np.testing.assert_allclose(features[p], expected, rtol=1e-12)
    assert set(labels) == set(range(4))


def test_beta_vae_score_on_shapes_beats_chance():
    def centroid_codes(images):  # ink, mean column and mean row of each image
        ink = images.sum(axis=(1, 2, 3))
        columns = (images[..., 0].sum(1) * np.arange(64)).sum(1) / ink
        rows = (images[..., 0].sum(2) * np.arange(64)).sum(1) / ink
        return np.stack([ink / 100, columns / 10, rows / 10], axis=1)

    # pairs of 16 (not the study's 64) rendered images per point: rendering is the cost, and
    # the scores stay as far above chance (eval accuracy 0.68-0.82 over seeds 0-2; 0.68-0.73
    # with 64)
    scores = dis.compute_beta_vae(
        centroid_codes,
        dis.SHAPES,
        np.random.default_rng(0),
        batch_size=16,
        num_train=60,
        num_eval=60,
    )
    assert scores["eval_accuracy"] > 0.5  # chance: 1/5


# --------------------------------------------------------------------------------------------
# FactorVAE score


def test_factor_vae_votes_match_a_loop():
    rng = np.random.default_rng(5)
    codes = rng.standard_normal((30, 8, 4)) * [1.0, 0.5, 2.0, 0.1]
    labels = rng.integers(0, 3, 30)
    global_std = rng.uniform(0.2, 2.0, 4)
    active = np.array([True, False, True, True])
    expected = np.zeros((3, 4), np.int64)
    for p in range(30):
        best, best_dim = np.inf, None
        for d in range(4):
            if active[d]:
                normalised = codes[p, :, d] / global_std[d]
                variance = np.sum((normalised - normalised.mean()) ** 2) / (8 - 1)
                if variance < best:
                    best, best_dim = variance, d
        expected[labels[p], best_dim] += 1
    votes = dis.factor_vae_votes(codes, labels, global_std, active, 3)
    np.testing.assert_array_equal(votes, expected)


def test_majority_vote_accuracy_matches_a_loop_and_a_hand_case():
    train = np.array([[5, 0, 1], [2, 4, 1]])  # code 2 ties: it predicts factor 0
    evaluation = np.array([[1, 2, 3], [4, 5, 6]])
    assert dis.majority_vote_accuracy(train, evaluation) == pytest.approx(
        ((5 + 4 + 1) / 13, (1 + 5 + 3) / 21)
    )
    rng = np.random.default_rng(6)
    train, evaluation = rng.integers(0, 20, (2, 5, 7))
    correct = {"train": 0, "eval": 0}
    for d in range(7):
        winner = max(range(5), key=lambda f: (train[f, d], -f))
        correct["train"] += train[winner, d]
        correct["eval"] += evaluation[winner, d]
    assert dis.majority_vote_accuracy(train, evaluation) == pytest.approx(
        (correct["train"] / train.sum(), correct["eval"] / evaluation.sum())
    )


def test_factor_vae_prunes_codes_by_their_std_and_scores_zero_with_none_active():
    def with_constant_code(x):  # a collapsed code: no variance at all
        return np.concatenate([_scaled_copy(x), np.zeros((len(x), 1))], axis=1)

    counts = {"num_train": 60, "num_eval": 60, "num_variance_estimate": 200}
    scores = dis.compute_factor_vae(with_constant_code, TOY, np.random.default_rng(7), **counts)
    assert scores["num_active_dims"] == 4 and scores["eval_accuracy"] == 1.0
    # std about 0.08 to 0.17 (variance under 0.05): active, as disentanglement_lib prunes on std
    small = dis.compute_factor_vae(
        lambda x: 0.1 * x, TOY, np.random.default_rng(7), prune_std=0.05, **counts
    )
    assert small["num_active_dims"] == 4
    collapsed = dis.compute_factor_vae(
        lambda x: np.zeros((len(x), 3)), TOY, np.random.default_rng(7), **counts
    )
    assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


# --------------------------------------------------------------------------------------------
# SAP


def test_sap_from_score_matrix_is_mean_top_two_gap():
    scores = np.random.default_rng(8).uniform(size=(6, 4))
    gaps = []
    for column in scores.T:
        ordered = sorted(column, reverse=True)
        gaps.append(ordered[0] - ordered[1])
    assert dis.sap_from_score_matrix(scores) == pytest.approx(np.mean(gaps), rel=1e-12)
    assert dis.sap_from_score_matrix(np.eye(3)) == 1.0


def test_sap_score_matrix_scores_each_code_alone_for_each_factor():
    rng = np.random.default_rng(9)
    factors = rng.integers(0, 2, (600, 2))
    codes = np.stack(
        [factors[:, 1] + 0.05 * rng.standard_normal(600), rng.standard_normal(600), factors[:, 0]],
        axis=1,
    )  # code 0 copies factor 1, code 2 factor 0, code 1 is noise
    scores = dis.sap_score_matrix(codes[:400], factors[:400], codes[400:], factors[400:])
    assert scores.shape == (3, 2)
    assert scores[0, 1] == 1.0 and scores[2, 0] == 1.0
    np.testing.assert_allclose(
        [scores[0, 0], scores[1, 0], scores[1, 1], scores[2, 1]], 0.5, atol=0.1
    )


def test_sap_of_a_copy_of_binary_factors_is_near_one_half():
    """A copy is perfectly predictive (1.0) and every other code is at chance (0.5)."""
    sap = dis.compute_sap(
        _scaled_copy, BINARY, np.random.default_rng(10), num_train=400, num_test=400
    )
    assert 0.4 < sap <= 0.5 + 1e-9
    noise = dis.compute_sap(
        _noise_representation(0), BINARY, np.random.default_rng(10), num_train=400, num_test=400
    )
    assert noise < 0.08


# --------------------------------------------------------------------------------------------
# Modularity and explicitness


def test_modularity_matches_the_template_definition():
    mi = np.random.default_rng(11).uniform(size=(5, 4))
    mi[3] = 0.0  # a code with no information
    per_code = []
    for theta in mi:
        if theta.max() == 0:
            per_code.append(0.0)
            continue
        template = np.where(np.arange(4) == np.argmax(theta), theta.max(), 0.0)
        per_code.append(1 - np.sum((theta - template) ** 2) / (theta.max() ** 2 * (4 - 1)))
    assert dis.modularity(mi) == pytest.approx(np.mean(per_code), rel=1e-12)
    assert dis.modularity(np.eye(3)[[0, 2, 1]]) == 1.0
    assert dis.modularity(np.ones((2, 5))) == pytest.approx(0.0, abs=1e-12)


def _rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of a positive > that of a negative)."""
    ranks = scipy.stats.rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_explicitness_is_mean_one_vs_rest_auc_of_standardised_logistic_regression():
    rng = np.random.default_rng(12)
    factors = np.stack([rng.integers(0, 3, 400), rng.integers(0, 4, 400)], axis=1)
    codes = np.stack(
        [5 + 3 * factors[:, 0] + rng.normal(0, 2, 400), rng.normal(0, 4, 400), factors.sum(1)],
        axis=1,
    )
    train, test = slice(0, 300), slice(300, None)
    mean, std = codes[train].mean(0), codes[train].std(0)
    expected = {"train": [], "test": []}
    multinomial = []  # today's LogisticRegression() default, which the study did not use
    for j in range(2):
        x = {name: (codes[rows] - mean) / std for name, rows in (("train", train), ("test", test))}
        classes = np.unique(factors[train, j])
        # scikit-learn 0.21's LogisticRegression(): a binary liblinear model per class against
        # the rest; probabilities: the classes' sigmoids normalised to sum to 1
        binaries = [
            LogisticRegression(solver="liblinear", random_state=3).fit(
                x["train"], factors[train, j] == c
            )
            for c in classes
        ]
        lbfgs = LogisticRegression(solver="lbfgs").fit(x["train"], factors[train, j])
        for name, rows in (("train", train), ("test", test)):
            sigmoid = np.stack([b.predict_proba(x[name])[:, 1] for b in binaries], axis=1)
            probabilities = sigmoid / sigmoid.sum(axis=1, keepdims=True)
            aucs = [
                _rank_auc(factors[rows, j] == c, probabilities[:, i]) for i, c in enumerate(classes)
            ]
            expected[name].append(np.mean(aucs))
            if name == "test":
                p = lbfgs.predict_proba(x[name])
                multinomial.append(
                    np.mean(
                        [_rank_auc(factors[rows, j] == c, p[:, i]) for i, c in enumerate(classes)]
                    )
                )
    got = dis.explicitness(codes[train], factors[train], codes[test], factors[test], seed=3)
    assert got == pytest.approx((np.mean(expected["train"]), np.mean(expected["test"])), rel=1e-9)
    assert 0.6 < got[1] < 0.99
    assert abs(np.mean(multinomial) - got[1]) > 5e-3  # here 0.878 against the study's 0.866


# --------------------------------------------------------------------------------------------
# DCI with gradient-boosted trees


def test_dci_gbt_matches_disentanglement_lib_formulas():
    rng = np.random.default_rng(13)
    factors = np.stack([rng.integers(0, 3, 400), rng.integers(0, 2, 400)], axis=1)
    codes = np.stack(
        [
            factors[:, 0] + rng.normal(0, 0.5, 400),
            factors[:, 1] + factors[:, 0],
            rng.normal(size=400),
        ],
        axis=1,
    )
    train, test = slice(0, 300), slice(300, None)
    importance, accuracy = np.zeros((3, 2)), []
    for j in range(2):
        model = GradientBoostingClassifier(random_state=5).fit(codes[train], factors[train, j])
        importance[:, j] = model.feature_importances_
        accuracy.append(np.mean(model.predict(codes[test]) == factors[test, j]))
    per_code = 1 - scipy.stats.entropy(importance.T + 1e-11, base=2)
    per_factor = 1 - scipy.stats.entropy(importance + 1e-11, base=3)
    got = dis.dci_from_split(
        codes[train], factors[train], codes[test], factors[test], estimator="gbt", seed=5
    )
    assert got["disentanglement"] == pytest.approx(
        np.sum(per_code * importance.sum(1) / importance.sum()), abs=1e-8
    )
    assert got["completeness"] == pytest.approx(
        np.sum(per_factor * importance.sum(0) / importance.sum()), abs=1e-8
    )
    assert got["informativeness"] == pytest.approx(np.mean(accuracy), rel=1e-12)
    capped = dis.dci_from_split(
        codes[train],
        factors[train],
        codes[test],
        factors[test],
        estimator="gbt",
        seed=5,
        max_train=100,
    )
    first_100 = dis.dci_from_split(
        codes[:100], factors[:100], codes[test], factors[test], estimator="gbt", seed=5
    )
    assert capped == first_100 and capped != got


def test_dci_rejects_an_unknown_estimator():
    codes, factors = np.zeros((20, 2)), np.zeros((20, 1), np.int64)
    with pytest.raises(ValueError, match="estimator"):
        dis.dci_scores(codes, factors, estimator="svm")


# --------------------------------------------------------------------------------------------
# The study on a synthetic ground truth


@pytest.mark.parametrize("represent", [_scaled_copy, _permuted_copy])
def test_a_copy_of_the_factors_scores_at_the_top(represent):
    scores = dis.study_scores(represent, TOY, seed=0, scale=SCALE)
    assert scores["mig"] > 0.9
    assert scores["beta_vae_score"] >= 0.95 and scores["factor_vae_score"] >= 0.95
    assert scores["modularity"] > 0.95 and scores["explicitness"] > 0.95
    assert scores["dci_disentanglement"] > 0.9 and scores["dci_completeness"] > 0.9
    assert scores["dci_informativeness"] > 0.9
    assert scores["sap"] > 0.2  # a linear SVM on one code cannot single out a middle class


def test_codes_independent_of_the_factors_score_near_chance():
    scores = dis.study_scores(_noise_representation(1), TOY, seed=0, scale=SCALE)
    chance = 1 / len(SIZES)
    assert abs(scores["beta_vae_score"] - chance) < 0.1
    assert abs(scores["factor_vae_score"] - chance) < 0.1
    assert scores["mig"] < 0.05 and scores["sap"] < 0.05
    assert scores["dci_disentanglement"] < 0.2 and scores["dci_completeness"] < 0.2
    assert abs(scores["explicitness"] - 0.5) < 0.1


def test_study_scores_are_a_pure_function_of_the_seed():
    first = dis.study_scores(_entangled, TOY, seed=3, scale=SCALE)
    assert set(first) == STUDY_KEYS
    assert all(isinstance(value, float) for value in first.values())
    assert dis.study_scores(_entangled, TOY, seed=3, scale=SCALE) == first
    assert dis.study_scores(_entangled, TOY, seed=4, scale=SCALE) != first


# --------------------------------------------------------------------------------------------
# A fully factorial TFDS data set (dsprites, shapes3d) as a ground truth, through TFDS's path


class _Factorial(tfds.core.GeneratorBasedBuilder):
    """Every combination of 3 x 4 factors once, shuffled, each image painting its factors."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
                    "label_colour": tfds.features.ClassLabel(num_classes=3),
                    "label_row": tfds.features.ClassLabel(num_classes=4),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        combos = [(c, r) for c in range(3) for r in range(4)]
        for i in np.random.default_rng(0).permutation(len(combos)):
            c, r = combos[i]
            image = np.zeros((4, 4, 1), np.uint8)
            image[r, :, 0] = 80 * (c + 1)
            yield int(i), {"image": image, "label_colour": c, "label_row": r}


def test_a_factorial_tfds_split_answers_any_factor_combination_with_its_example(tmp_path):
    builder = _Factorial(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    truth = ground_truth.factorial(builder)
    assert truth.factor_sizes == (3, 4)
    factors = np.array([[0, 0], [2, 3], [1, 2], [2, 3]])
    images = truth.observations(factors)
    for (c, r), image in zip(factors, images, strict=True):
        expected = np.zeros((4, 4, 1), np.float32)
        expected[r, :, 0] = 80 * (c + 1) / 255.0
        np.testing.assert_allclose(image, expected)
    drawn = truth.sample_factors(np.random.default_rng(1), 500)
    assert drawn.min(axis=0).tolist() == [0, 0] and drawn.max(axis=0).tolist() == [2, 3]
    # a code that reads the factors off the images is a perfectly disentangled one
    read = lambda x: np.stack([x.max(axis=(1, 2, 3)), x.sum(axis=(2, 3)).argmax(1)], 1)
    codes, f = dis.sample_represented(read, truth, np.random.default_rng(2), 300)
    assert dis.mutual_information_gap(codes, f) > 0.9
    assert os.path.exists(os.path.join(str(builder.data_dir), "train-" + ground_truth.INDEX_FILE))
    assert ground_truth.factorial(builder).observations(factors).tolist() == images.tolist()


def test_a_split_missing_a_combination_is_refused(tmp_path):
    class Partial(_Factorial):
        def _generate_examples(self):
            for i, (key, example) in enumerate(super()._generate_examples()):
                if i:  # one combination left out
                    yield key, example

    builder = Partial(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    with pytest.raises(ValueError, match="not fully factorial: 11 examples for 12"):
        ground_truth.factorial(builder)
