"""Evaluation metrics as pure functions of arrays: sample quality (Fréchet distance, KID,
precision/recall, Inception Score, class coverage) from features, VAE likelihood bounds (ELBO,
IWAE, bits/dim), and disentanglement scores against a known generative process (MIG, DCI,
BetaVAE, FactorVAE, SAP, modularity and explicitness: `study_scores`)."""

from genimg_jax.metrics.disentanglement import (
    SHAPES,
    GroundTruth,
    dci_from_importance,
    dci_scores,
    mutual_information_gap,
    represent_factors,
    sample_represented,
    study_scores,
)
from genimg_jax.metrics.distances import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_inception_distance,
)
from genimg_jax.metrics.likelihood import (
    bits_per_dim,
    iwae_bound,
    log_importance_weights,
    negative_elbo,
)
from genimg_jax.metrics.manifold import (
    class_coverage,
    inception_score,
    knn_radii,
    precision_recall,
)

__all__ = [
    "SHAPES",
    "GroundTruth",
    "bits_per_dim",
    "class_coverage",
    "dci_from_importance",
    "dci_scores",
    "feature_statistics",
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
    "represent_factors",
    "sample_represented",
    "study_scores",
]
