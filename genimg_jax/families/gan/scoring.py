"""A GAN's scores: Fréchet distance, KID, precision/recall, Inception Score and class coverage
of `eval.examples` EMA samples against as many reference images, on the features of
`eval.feature_net` (a domain classifier trained by genimg, whose test accuracy is reported with
the scores, or InceptionV3 from a local weights file); the reference features are cached."""

from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from genimg_jax.core.family import Family
from genimg_jax.families import draw
from genimg_jax.features import feature_nets, reference
from genimg_jax.metrics import distances, manifold

SAMPLE_CHUNK = 250  # samples drawn per compiled call (memory of wide generators)


def gan_scorer(family: Family, config: ml_collections.ConfigDict) -> Callable[..., dict]:
    """score(state): sample-quality scores of `eval.examples` samples (fixed latents of the
    config's seed), sample i of class i mod K for a conditional G."""
    num, seed = config.eval.examples, config.seed
    net = feature_nets.for_config(config)
    real_features = reference.reference_features(config, net, num)
    z = draw.latents(jax.random.PRNGKey(seed), len(real_features), config.model.latent_dim)
    labels = draw.class_labels(len(z), config)
    samples = draw.in_unit_range(family)

    def score(state) -> dict[str, float]:
        fake = np.concatenate(list(draw.in_parts(samples, state, z, labels, SAMPLE_CHUNK)))
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
