"""`genimg eval`: scores of a workdir's latest checkpoint, offline.

GANs: Fréchet distance, KID, precision/recall, a classifier Inception Score and class coverage,
all on the features of a domain classifier trained by genimg on the data set itself (cached
next to the data; its test accuracy is reported with every score). VAEs: test-set negative
ELBO and the importance-weighted bound (IWAE) in nats and bits/dim; on the shapes data also
MIG and DCI disentanglement.
"""

import json
import os

import flax
import jax
import ml_collections
import numpy as np

from genimg_jax import models, sample, sampling, trainer
from genimg_jax.data import builders, pipeline
from genimg_jax.evaluate import classifier, disentanglement, distances, likelihood, manifold


def _images(config, split: str, num: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `num` examples of a split, fitted to the model's geometry: uint8, labels."""
    source = pipeline.load_split(config.data.name, split, config.data.data_dir)
    example = source.get(np.arange(min(num, len(source))))
    images = pipeline.fit_images(example["image"], config.data.image_size, config.data.channels)
    return images, example.get("label")


def domain_classifier(config: ml_collections.ConfigDict, steps: int = 600):
    """(params, test accuracy) of the classifier for this data set and geometry, trained once
    on the training split and cached under the data dir."""
    data = config.data
    name = f"{data.name}_{data.image_size}x{data.channels}_{steps}"
    folder = os.path.join(pipeline.default_data_dir(data.data_dir), "genimg_classifiers")
    path = os.path.join(folder, f"{name}.msgpack")
    train_x, train_y = _images(config, data.train_split, 10**9)
    test_x, test_y = _images(config, data.eval_split, 10**9)
    if train_y is None:
        raise pipeline.DataError(
            f"data set {data.name!r} has no labels: the domain classifier that the "
            f"GAN scores use needs them"
        )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    template, _ = classifier.train_classifier(train_x[:8], train_y[:8], num_classes, steps=1)
    if os.path.exists(path):
        with open(path, "rb") as f:
            params = flax.serialization.from_bytes(template, f.read())
    else:
        params, _ = classifier.train_classifier(train_x, train_y, num_classes, steps=steps)
        os.makedirs(folder, exist_ok=True)
        with open(path, "wb") as f:
            f.write(flax.serialization.to_bytes(params))
    return params, classifier.accuracy(params, test_x, test_y), num_classes


def gan_scores(config, state, num: int, seed: int) -> dict[str, float]:
    """Classifier-feature scores of `num` EMA samples against `num` test images."""
    params, test_accuracy, num_classes = domain_classifier(config)
    real, _ = _images(config, config.data.eval_split, num)
    z = sampling.latents(jax.random.PRNGKey(seed), len(real), config.model.latent_dim)
    fake = np.asarray(jax.jit(sampling.gan_samples)(state, z))
    fake = np.clip((fake + 1.0) / 2.0, 0.0, 1.0)  # [-1, 1] -> [0, 1]
    real_features, _ = classifier.features_and_probs(params, real)
    fake_features, fake_probs = classifier.features_and_probs(params, fake)
    kid, kid_std = distances.kernel_inception_distance(real_features, fake_features, seed=seed)
    precision, recall = manifold.precision_recall(real_features, fake_features)
    score, score_std = manifold.inception_score(fake_probs)
    coverage = manifold.class_coverage(fake_probs, num_classes)
    return {
        "fid": distances.frechet_distance_from_features(real_features, fake_features),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "inception_score": score,
        "inception_score_std": score_std,
        "classes_hit": coverage["hit_classes"],
        "class_kl_to_uniform": coverage["kl_to_uniform"],
        "classifier_test_accuracy": test_accuracy,
        "num_samples": len(real),
    }


def vae_scores(config, state, num: int, iwae_k: int, seed: int) -> dict[str, float]:
    """Test-set negative ELBO and IWAE bound (nats, bits/dim); MIG/DCI on the shapes data."""
    images, _ = _images(config, config.data.eval_split, num)
    x = pipeline.scale_images(images, trainer.value_range(config))
    rng = jax.random.PRNGKey(seed)
    dims = int(np.prod(x.shape[1:]))
    elbo = np.asarray(likelihood.negative_elbo(state, x, rng))
    iwae = np.asarray(likelihood.iwae_bound(state, x, rng, iwae_k))
    scores = {
        "neg_elbo": float(elbo.mean()),
        "iwae": float(iwae.mean()),
        "iwae_k": iwae_k,
        "neg_elbo_bits_per_dim": float(likelihood.bits_per_dim(elbo, dims).mean()),
        "iwae_bits_per_dim": float(likelihood.bits_per_dim(iwae, dims).mean()),
        "num_examples": len(x),
    }
    if config.data.name == "shapes" and config.data.image_size == builders.shapes.IMAGE_SIZE:
        encode = jax.jit(lambda v: state.apply_fn({"params": state.params}, v, method="encode")[0])
        codes, factors = disentanglement.sample_codes(
            lambda v: np.asarray(encode(v)), num=min(num, 5000), seed=seed, batch=256
        )
        scores["mig"] = disentanglement.mutual_information_gap(codes, factors)
        scores |= {f"dci_{k}": v for k, v in disentanglement.dci_scores(codes, factors).items()}
    return scores


def evaluate_workdir(
    config, workdir: str, num: int = 1000, iwae_k: int = 100, seed: int = 0
) -> dict:
    """Scores of the latest checkpoint in `workdir`, also written to `eval_<step>.json`."""
    state = sample.restore_latest(config, workdir)
    kind = models.get_family(config.model.family).kind
    step = int(jax.device_get(state.step))
    scores = (
        gan_scores(config, state, num, seed)
        if kind == "gan"
        else vae_scores(config, state, num, iwae_k, seed)
    )
    result = {"step": step, **{k: float(v) for k, v in scores.items()}}
    with open(os.path.join(workdir, f"eval_{step:06d}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
