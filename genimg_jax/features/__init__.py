"""The feature networks that GAN scores are computed on (`feature_nets.py`): a domain classifier
trained by genimg (`classifier.py`) or InceptionV3 from a local weights file (`inception.py`),
and the cached features of the real images (`reference.py`)."""

from genimg_jax.features.classifier import (
    Classifier,
    accuracy,
    features_and_probs,
    predict_logits,
    train_classifier,
)

__all__ = ["Classifier", "accuracy", "features_and_probs", "predict_logits", "train_classifier"]
