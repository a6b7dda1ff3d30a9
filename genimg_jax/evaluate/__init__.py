"""Evaluation: sample quality (FID, KID, precision/recall, Inception Score, class coverage) from
a classifier's features, VAE likelihood bounds (ELBO, IWAE, bits/dim), and disentanglement
scores (MIG, DCI) against known factors."""

from genimg_jax.evaluate.classifier import (
    Classifier,
    accuracy,
    features_and_probs,
    predict_logits,
    train_classifier,
)
from genimg_jax.evaluate.disentanglement import (
    dci_from_importance,
    dci_scores,
    encode_for_factors,
    mutual_information_gap,
    sample_codes,
)
from genimg_jax.evaluate.distances import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_inception_distance,
)
from genimg_jax.evaluate.likelihood import (
    bits_per_dim,
    iwae_bound,
    log_importance_weights,
    negative_elbo,
)
from genimg_jax.evaluate.manifold import (
    class_coverage,
    inception_score,
    knn_radii,
    precision_recall,
)

__all__ = [
    "Classifier",
    "accuracy",
    "bits_per_dim",
    "class_coverage",
    "dci_from_importance",
    "dci_scores",
    "encode_for_factors",
    "feature_statistics",
    "features_and_probs",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "iwae_bound",
    "kernel_inception_distance",
    "knn_radii",
    "log_importance_weights",
    "mutual_information_gap",
    "negative_elbo",
    "precision_recall",
    "predict_logits",
    "sample_codes",
    "train_classifier",
]
