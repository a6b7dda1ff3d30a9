"""Evaluation metrics against independent references: SciPy/NumPy/scikit-learn formulas,
closed forms, hand-worked cases, and known behaviour (bounds tighten, classifiers learn)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
from conftest import load_config
from sklearn.metrics import mutual_info_score

from genimg_jax import features, metrics
from genimg_jax.data import pipeline
from genimg_jax.data.builders import shapes
from genimg_jax.families import create_state
from genimg_jax.metrics import disentanglement, likelihood


def _correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """n samples [n, d] of a Gaussian with a random full covariance."""
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + shift


# --------------------------------------------------------------------------------------------
# Fréchet distance


def test_frechet_distance_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    f1, f2 = _correlated(rng, 600, 12), _correlated(rng, 500, 12, shift=0.5)
    mu1, s1 = f1.mean(0), np.cov(f1, rowvar=False)
    mu2, s2 = f2.mean(0), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # the pytorch-fid / TTUR formula
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    got = metrics.frechet_distance_from_features(f1, f2)
    assert got == pytest.approx(expected, rel=1e-8)
    mu, sigma = metrics.feature_statistics(f1)
    np.testing.assert_allclose(sigma, s1, rtol=1e-12)
    np.testing.assert_allclose(mu, mu1, rtol=1e-12)


def test_frechet_distance_of_diagonal_gaussians_has_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(7), rng.standard_normal(7)
    var1, var2 = rng.uniform(0.1, 3, 7), rng.uniform(0.1, 3, 7)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n", [400, 10])  # 10 < D: singular covariance
def test_frechet_distance_of_a_set_with_itself_is_zero(n):
    features = _correlated(np.random.default_rng(2), n, 16)
    scale = np.trace(np.cov(features, rowvar=False))
    assert (
        abs(metrics.frechet_distance_from_features(features, features)) < 1e-6 * scale
    )  # sqrt of ~0 eigenvalues: ~√ε


# --------------------------------------------------------------------------------------------
# KID


def _bruteforce_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²_u with k(a, b) = (a·b/d + 1)³, pair by pair."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_on_the_full_set_equals_bruteforce_unbiased_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) * 1.3 + 0.2
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(_bruteforce_unbiased_mmd2(x, y), rel=1e-10, abs=1e-12)
    assert std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((1000, 32)), rng.standard_normal((1000, 32))
    shifted = rng.standard_normal((1000, 32)) + 0.3
    same, _ = metrics.kernel_inception_distance(a, b, num_subsets=20, subset_size=500)
    different, _ = metrics.kernel_inception_distance(a, shifted, num_subsets=20, subset_size=500)
    assert abs(same) < 0.01
    assert different > 0.1
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kernel_inception_distance(a, b[:100], subset_size=500)


# --------------------------------------------------------------------------------------------
# Precision / recall, coverage, Inception Score


def _bruteforce_coverage(queries: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Fraction of queries within some reference ball of radius its k-th NN distance."""
    ref_d = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    radii = np.sort(ref_d, axis=1)[:, k]  # column 0 is the point itself
    q_d = np.linalg.norm(queries[:, None] - reference[None], axis=-1)
    return float(np.mean((q_d <= radii[None]).any(axis=1)))


def test_precision_recall_of_identical_and_of_far_apart_sets():
    real = np.random.default_rng(5).standard_normal((200, 8)).astype(np.float32)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_precision_recall_of_a_half_overlapping_line():
    # Real: 100 points 0..99 on a line. Fake: the first 50 of them, plus 50 points far away.
    real = np.stack([np.arange(100.0), np.zeros(100)], axis=1)
    fake = np.concatenate([real[:50], np.stack([np.arange(50.0), np.full(50, 1e3)], axis=1)])
    precision, recall = metrics.precision_recall(real, fake, k=3)
    assert precision == 0.5  # the 50 fakes on the real line
    assert recall == 0.53  # reals 0..52: fake 49's 3rd-NN radius (3) reaches real 52


def test_precision_recall_match_bruteforce_on_random_features():
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((300, 6)), rng.standard_normal((250, 6)) * 1.2 + 0.3
    precision, recall = metrics.precision_recall(real, fake, k=5, chunk=64)
    assert precision == pytest.approx(_bruteforce_coverage(fake, real, 5))
    assert recall == pytest.approx(_bruteforce_coverage(real, fake, 5))
    radii = metrics.knn_radii(real, k=5, chunk=64)
    reference = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1), axis=1)[:, 5]
    np.testing.assert_allclose(radii, reference, rtol=1e-4)


def test_inception_score_of_confident_uniform_and_collapsed_predictions():
    k, n = 10, 1000
    confident = np.full((n, k), 1e-6)
    confident[np.arange(n), np.arange(n) % k] = 1 - 1e-6 * (k - 1)
    mean, std = metrics.inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-3) and std < 1e-6
    collapsed = np.zeros((n, k))
    collapsed[:, 3] = 1.0
    assert metrics.inception_score(collapsed, splits=10)[0] == pytest.approx(1.0)


def test_inception_score_matches_scipy_entropy_formula():
    probs = np.random.default_rng(7).dirichlet(np.full(5, 0.3), size=600)
    expected = [
        np.exp(np.mean(scipy.stats.entropy(part.T, part.mean(0)[:, None])))
        for part in np.array_split(probs, 3)
    ]
    mean, std = metrics.inception_score(probs, splits=3)
    assert mean == pytest.approx(np.mean(expected), rel=1e-10)
    assert std == pytest.approx(np.std(expected), rel=1e-8)


def test_class_coverage_counts_hit_classes_and_kl_to_uniform():
    assert metrics.class_coverage(np.array([0, 0, 1, 1]), 4) == {
        "hit_classes": 2,
        "kl_to_uniform": pytest.approx(np.log(2)),
    }
    probs = np.eye(10)[np.full(50, 7)] * 0.9 + 0.01  # all predicted as class 7
    assert metrics.class_coverage(probs, 10) == {
        "hit_classes": 1,
        "kl_to_uniform": pytest.approx(np.log(10)),
    }
    even = metrics.class_coverage(np.arange(100) % 10, 10)
    assert even["hit_classes"] == 10 and even["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------
# ELBO / IWAE


@pytest.fixture(scope="module")
def vae_and_images(data_dir):
    """A random-parameter quick VAE whose decoder is made 10x more sensitive to z (so that the
    posterior differs from q and the IWAE bound has room to tighten), and 8 test digits. An MLP
    VAE: the bounds read the network only through encode and decode, and dense layers decode
    the tens of thousands of importance samples below 2-3x faster than the conv VAE's."""
    config = load_config("vae_mnist")
    config.model.family = "mlp_vae"
    state = create_state(config, jax.random.key(0))
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (
            v * 10.0 if jax.tree_util.keystr(path).startswith("['decoder']['Dense_0']") else v
        ),
        state.params,
    )
    images = pipeline.load_split("bundled_mnist", "test", data_dir).get(np.arange(8))["image"]
    return state.replace(params=params), jnp.asarray(images / 255.0, jnp.float32)


def test_gaussian_log_densities_match_scipy():
    rng = np.random.default_rng(8)
    x, mean, logvar = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(4)
    expected = scipy.stats.multivariate_normal(mean, np.diag(np.exp(logvar))).logpdf(x)
    got = likelihood.log_normal_diag(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(logvar))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    std = scipy.stats.multivariate_normal(np.zeros(4)).logpdf(x)
    np.testing.assert_allclose(likelihood.log_standard_normal(jnp.asarray(x)), std, rtol=1e-5)


def test_iwae_with_one_sample_is_the_elbo(vae_and_images):
    state, x = vae_and_images
    rng = jax.random.key(1)
    same_noise = metrics.negative_elbo(state, x, rng, analytic_kl=False)
    np.testing.assert_allclose(metrics.iwae_bound(state, x, rng, k=1), same_noise, rtol=1e-6)
    # In expectation, -log w = -log p(x|z) + log q - log p equals recon + the closed-form KL.
    neg_log_w = -np.asarray(metrics.log_importance_weights(state, x, rng, k=1000))  # [k, B]
    keys = jax.random.split(jax.random.key(2), 1000)
    analytic = np.asarray(jax.vmap(lambda r: metrics.negative_elbo(state, x, r))(keys))
    se = np.sqrt(neg_log_w.var(0) / 1000 + analytic.var(0) / 1000)
    assert np.all(np.abs(neg_log_w.mean(0) - analytic.mean(0)) < 4 * se + 1e-3)


def test_iwae_bound_tightens_as_k_grows(vae_and_images):
    state, x = vae_and_images
    keys = [jax.random.key(100 + r) for r in range(40)]
    # draws per k: the bound's spread over draws shrinks with k (std 190, 60 and 11 nats for
    # k = 1, 10, 100 here, around 1640, 830 and 630), so 8 draws of k = 100 suffice
    draws = {1: keys, 10: keys, 100: keys[:8]}
    bound = {
        k: np.mean([np.asarray(metrics.iwae_bound(state, x, r, k=k)) for r in draws[k]])
        for k in (1, 10, 100)
    }
    elbo = np.mean([np.asarray(metrics.negative_elbo(state, x, r)) for r in keys])
    assert bound[100] < bound[10] - 1.0 < bound[1] - 10.0
    assert bound[1] == pytest.approx(elbo, rel=0.02)  # same expectation, 40·8 draws
    assert bound[10] < elbo and bound[100] < elbo


def test_chunked_iwae_equals_unchunked_and_logsumexp_of_weights(vae_and_images):
    state, x = vae_and_images
    rng = jax.random.key(3)
    whole = metrics.iwae_bound(state, x, rng, k=500, chunk=500)
    np.testing.assert_allclose(metrics.iwae_bound(state, x, rng, k=500, chunk=37), whole, rtol=1e-6)
    log_w = np.asarray(metrics.log_importance_weights(state, x, rng, k=500), np.float64)
    reference = -(scipy.special.logsumexp(log_w, axis=0) - np.log(500))
    np.testing.assert_allclose(whole, reference, rtol=1e-6)


def test_iwae_with_5000_samples_runs_in_bounded_memory(vae_and_images):
    state, x = vae_and_images
    big = np.asarray(metrics.iwae_bound(state, x[:2], jax.random.key(4), k=5000, chunk=500))
    small = np.asarray(metrics.iwae_bound(state, x[:2], jax.random.key(4), k=100))
    assert np.all(np.isfinite(big)) and np.all(big < small + 5.0)
    bpd = metrics.bits_per_dim(big, 28 * 28)
    np.testing.assert_allclose(bpd, big / (784 * np.log(2)), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Disentanglement


@pytest.fixture(scope="module")
def factor_codes():
    """(good codes, shuffled codes, factors [N, 5]): good codes are the factors permuted, plus a
    little noise and one pure-noise dimension; shuffled codes are unrelated to the factors."""
    rng = np.random.default_rng(9)
    factors = shapes.sample_factors(rng, 3000)
    good = factors[:, [3, 0, 4, 1, 2]] + 0.01 * rng.standard_normal((3000, 5))
    good = np.concatenate([good, rng.standard_normal((3000, 1))], axis=1)
    return good, good[rng.permutation(3000)], factors


def test_mutual_information_matches_sklearn():
    rng = np.random.default_rng(10)
    a = rng.integers(0, 5, 500)
    b = (a + rng.integers(0, 3, 500)) % 7
    assert disentanglement.discrete_mutual_information(a, b) == pytest.approx(
        mutual_info_score(a, b), rel=1e-10
    )


def _reference_mig(codes: np.ndarray, factors: np.ndarray, bins: int) -> float:
    """MIG as disentanglement_lib computes it, with scikit-learn's mutual information."""
    binned = [np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T]
    mi = np.array([[mutual_info_score(f, c) for f in factors.T] for c in binned])  # [Z, F]
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    top = np.sort(mi, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy))


def test_mig_matches_reference_on_partly_informative_codes():
    rng = np.random.default_rng(12)
    factors = np.stack([rng.integers(0, 4, 2000), rng.integers(0, 10, 2000)], axis=1)
    codes = np.stack(
        [
            factors[:, 0] + rng.normal(0, 0.7, 2000),  # noisy copy of factor 0
            factors[:, 1] + factors[:, 0] + rng.normal(0, 2, 2000),  # mixes both
            rng.standard_normal(2000),
        ],
        axis=1,
    )
    got = metrics.mutual_information_gap(codes, factors, num_bins=15)
    assert got == pytest.approx(_reference_mig(codes, factors, 15), rel=1e-9)
    assert 0.05 < got < 0.95


def test_mig_is_high_for_permuted_factors_and_low_for_shuffled_codes(factor_codes):
    good, shuffled, factors = factor_codes
    assert 0.8 < metrics.mutual_information_gap(good, factors) <= 1.0
    assert metrics.mutual_information_gap(shuffled, factors) < 0.1


def test_dci_is_high_for_permuted_factors_and_low_for_shuffled_codes(factor_codes):
    good, shuffled, factors = factor_codes
    high = metrics.dci_scores(good, factors, num_trees=20)
    low = metrics.dci_scores(shuffled, factors, num_trees=20)
    assert high["disentanglement"] > 0.9 and high["completeness"] > 0.9
    assert high["informativeness"] > 0.9
    assert low["disentanglement"] < 0.1 and low["completeness"] < 0.1
    assert low["informativeness"] < 0.5


def test_dci_from_importance_hand_cases():
    assert metrics.dci_from_importance(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert metrics.dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-9)
    one_code_for_all = np.zeros((4, 3))
    one_code_for_all[2] = 1.0  # code 2 predicts every factor: entangled but complete
    assert metrics.dci_from_importance(one_code_for_all) == pytest.approx((0.0, 1.0), abs=1e-9)


def test_represent_factors_renders_then_encodes_in_batches():
    factors = shapes.sample_factors(np.random.default_rng(11), 20)

    def encode(images):  # [n, 64, 64, 1] in [0, 1] -> [n, 2]: ink and mean column
        ink = images.sum(axis=(1, 2, 3))
        return np.stack([ink, (images[..., 0].sum(1) * np.arange(64)).sum(1) / ink], 1)

    codes = metrics.represent_factors(encode, metrics.SHAPES, factors, batch=7)
    np.testing.assert_allclose(codes, encode(shapes.render(factors) / 255.0), rtol=1e-5)
    # x position moves the shape's centre of mass to the right
    assert scipy.stats.spearmanr(factors[:, 3], codes[:, 1]).statistic > 0.9


# --------------------------------------------------------------------------------------------
# Classifier: the offline feature network


@pytest.fixture(scope="module")
def mnist(data_dir):
    train = pipeline.load_split("bundled_mnist", "train", data_dir)
    test = pipeline.load_split("bundled_mnist", "test", data_dir)
    return train.get(np.arange(len(train))), test.get(np.arange(len(test)))


def test_classifier_learns_bundled_mnist_and_gives_features(mnist):
    train, test = mnist
    params, predict = features.train_classifier(
        train["image"], train["label"], 10, steps=200, batch_size=64, seed=0
    )
    accuracy = np.mean(predict(params, test["image"]).argmax(1) == test["label"])
    assert accuracy > 0.85  # 0.90-0.92 at seeds 0-2 after these 200 steps, 0.95 after 400
    test_features, probs = features.features_and_probs(params, test["image"], batch_size=300)
    assert test_features.shape == (1000, 128) and probs.shape == (1000, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert metrics.class_coverage(probs, 10)["hit_classes"] == 10
    # Real held-out digits are far closer to the training digits than scrambled pixels are.
    train_features, _ = features.features_and_probs(params, train["image"][:1000])
    scrambled = (
        np.random.default_rng(0).permutation(test["image"].reshape(-1)).reshape(test["image"].shape)
    )
    noise_features, _ = features.features_and_probs(params, scrambled)
    fid_real = metrics.frechet_distance_from_features(train_features, test_features)
    fid_noise = metrics.frechet_distance_from_features(train_features, noise_features)
    assert fid_real < 0.1 * fid_noise


def test_classifier_training_is_deterministic_in_the_seed(mnist):
    train, _ = mnist
    images, labels = train["image"][:512], train["label"][:512]
    a, _ = features.train_classifier(images, labels, 10, steps=10, seed=3)
    b, _ = features.train_classifier(images, labels, 10, steps=10, seed=3)
    c, _ = features.train_classifier(images, labels, 10, steps=10, seed=4)
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c))
    same, differ = zip(*((np.array_equal(x, y), not np.allclose(x, z)) for x, y, z in leaves))
    assert all(same) and all(differ)
