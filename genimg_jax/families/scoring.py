"""Scores of a trained state, offline: what `genimg eval` reports and what the trainer logs every
`eval.every` steps (keeping the best checkpoint by `eval.best_metric`, see `best.py`).

GANs: Fréchet distance, KID, precision/recall, Inception Score and class coverage of
`eval.examples` EMA samples against as many test images, on the features of `eval.feature_net`
(a domain classifier trained by genimg, whose test accuracy is reported with the scores, or
InceptionV3 from a local weights file); the test images' features are cached. VAEs: test-set
negative ELBO and the importance-weighted bound (IWAE, `eval.iwae_k` samples) in nats and
bits/dim; on the 64-px shapes data also MIG and DCI disentanglement.

`make_scorer(config)` does the one-off work (feature net, reference features, test images) and
returns `score(state) -> {name: float}`, a deterministic function of the state.
"""

import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax.core import family
from genimg_jax.data import pipeline
from genimg_jax.families import sampling
from genimg_jax.families.vae import ground_truth
from genimg_jax.features import feature_nets, reference
from genimg_jax.metrics import disentanglement, distances, likelihood, manifold

SAMPLE_CHUNK = 250  # GAN samples drawn per compiled call (memory of wide generators)
EXAMPLE_BATCH = 100  # VAE test examples bounded at once
DECODED_ELEMENTS = 2**25  # pixels decoded at once in the IWAE bound (~1 GB of activations)


@jax.jit
def _samples_in_unit_range(state, z: jax.Array, labels: jax.Array | None) -> jax.Array:
    images = sampling.gan_samples(state, z, labels)
    return jnp.clip((images + 1.0) / 2.0, 0.0, 1.0)  # [-1, 1] -> [0, 1]


@jax.jit
def _posterior_mean(state, x: jax.Array) -> jax.Array:
    return state.apply_fn({"params": state.params}, x, method="encode")[0]


def gan_scorer(config: ml_collections.ConfigDict, num: int, seed: int) -> Callable[..., dict]:
    """score(state): sample-quality scores of `num` EMA samples (fixed latents of `seed`)."""
    net = feature_nets.for_config(config)
    real_features = reference.reference_features(config, net, num)
    z = sampling.latents(jax.random.PRNGKey(seed), len(real_features), config.model.latent_dim)
    labels = sampling.class_labels(len(z), config)  # sample i draws class i mod K

    def samples(state, part: slice) -> np.ndarray:
        part_labels = None if labels is None else labels[part]
        return np.asarray(_samples_in_unit_range(state, z[part], part_labels))

    def score(state) -> dict[str, float]:
        chunks = range(0, len(z), SAMPLE_CHUNK)
        fake = np.concatenate([samples(state, slice(i, i + SAMPLE_CHUNK)) for i in chunks])
        fake_features, fake_probs = net.extract(fake)
        kid, kid_std = distances.kernel_inception_distance(
            real_features, fake_features, subset_size=max(2, len(fake) // 2), seed=seed
        )
        precision, recall = manifold.precision_recall(real_features, fake_features)
        inception_score, inception_score_std = manifold.inception_score(
            fake_probs, splits=min(10, len(fake_probs))
        )
        scores = {
            "fid": distances.frechet_distance_from_features(real_features, fake_features),
            "kid": kid,
            "kid_std": kid_std,
            "precision": precision,
            "recall": recall,
            "inception_score": inception_score,
            "inception_score_std": inception_score_std,
        }
        if net.name == "classifier":
            coverage = manifold.class_coverage(fake_probs, net.num_classes)
            scores["classes_hit"] = coverage["hit_classes"]
            scores["class_kl_to_uniform"] = coverage["kl_to_uniform"]
        return scores | net.facts | {"num_samples": len(fake), "num_reference": len(real_features)}

    return score


def likelihood_bounds(
    state, x: np.ndarray, rng: jax.Array, k: int, batch: int = EXAMPLE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(negative ELBO [N], IWAE bound [N]) in nats of x [N, H, W, C], `batch` examples at a time
    (batch i with key fold_in(rng, i)), decoding as many importance samples at once as keep
    the decoded images within `DECODED_ELEMENTS`."""
    chunk = int(max(1, min(likelihood.DEFAULT_CHUNK, DECODED_ELEMENTS // (batch * x[0].size))))
    elbo, iwae = [], []
    for i, start in enumerate(range(0, len(x), batch)):
        key, part = jax.random.fold_in(rng, i), x[start : start + batch]
        elbo.append(np.asarray(likelihood.negative_elbo(state, part, key)))
        iwae.append(np.asarray(likelihood.iwae_bound(state, part, key, k, chunk)))
    return np.concatenate(elbo), np.concatenate(iwae)


def vae_scorer(
    config: ml_collections.ConfigDict,
    num: int,
    iwae_k: int,
    seed: int,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Callable[..., dict]:
    """score(state): test-set likelihood bounds, and disentanglement where factors are known."""
    images, _ = feature_nets.load_images(config, config.data.eval_split, num)
    x = pipeline.scale_images(images, value_range)
    if config.data.binarize:  # the model was trained on, and is scored on, binary pixels
        x = pipeline.binarize(x, value_range)
    rng = jax.random.PRNGKey(seed)
    dims = int(np.prod(x.shape[1:]))
    truth = (
        ground_truth.for_data(config.data) if ground_truth.has_known_factors(config.data) else None
    )

    def score(state) -> dict[str, float]:
        elbo, iwae = likelihood_bounds(state, x, rng, iwae_k)
        scores = {
            "neg_elbo": float(elbo.mean()),
            "iwae": float(iwae.mean()),
            "iwae_k": iwae_k,
            "neg_elbo_bits_per_dim": float(likelihood.bits_per_dim(elbo, dims).mean()),
            "iwae_bits_per_dim": float(likelihood.bits_per_dim(iwae, dims).mean()),
            "num_examples": len(x),
        }
        if truth is not None:
            scores |= disentanglement_scores(state, config, truth, num, seed)
        return scores

    return score


def disentanglement_scores(
    state,
    config: ml_collections.ConfigDict,
    truth: disentanglement.GroundTruth,
    num: int,
    seed: int,
) -> dict[str, float]:
    """The codes (posterior means) of the data's generative process `truth`
    (`evaluate.ground_truth`) scored by `eval.disentanglement_scale`: 0, MIG and DCI (random
    forests) on min(num, 5000) codes; > 0, Locatello et al.'s study scores at that fraction of
    the study's sample counts (`metrics.disentanglement.study_scores`). Its images are fitted to
    the model's geometry as the training pipeline fits them."""
    data = config.data

    def represent(images: np.ndarray) -> np.ndarray:
        fitted = pipeline.fit_images(
            np.round(images * 255).astype(np.uint8), data.image_size, data.channels
        )
        x = pipeline.scale_images(fitted, (0.0, 1.0))
        if data.binarize:
            x = pipeline.binarize(x, (0.0, 1.0))
        return np.asarray(_posterior_mean(state, x))

    scale = config.eval.disentanglement_scale
    if scale > 0:
        return disentanglement.study_scores(represent, truth, seed, scale=scale)
    codes, factors = disentanglement.sample_represented(
        represent, truth, np.random.default_rng(seed), min(num, 5000)
    )
    dci = disentanglement.dci_scores(codes, factors)
    return {"mig": disentanglement.mutual_information_gap(codes, factors)} | {
        f"dci_{k}": v for k, v in dci.items()
    }


def make_scorer(config: ml_collections.ConfigDict) -> Callable[..., dict[str, float]]:
    """score(state) -> {name: float} of this config's family (its `make_scorer`), with
    `config.eval`'s settings (`examples`, `iwae_k`, `feature_net`) and latents/noise from
    `config.seed`."""
    score = family.of(config).make_scorer(config)
    return lambda state: {k: float(v) for k, v in score(state).items()}


def write_scores(workdir: str, step: int, scores: dict[str, float], tag: str = "") -> str:
    """`eval_<step>[_<tag>].json` in the workdir: {"step": step, **scores}; returns its path."""
    path = os.path.join(workdir, f"eval_{step:06d}{'_' + tag if tag else ''}.json")
    with open(path, "w") as f:
        json.dump({"step": step, **scores}, f, indent=2)
    return path
