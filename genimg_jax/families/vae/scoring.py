"""A VAE's scores: test-set negative ELBO and the importance-weighted bound (IWAE,
`eval.iwae_k` samples) in nats and bits/dim, under the decoder distribution the model was
trained with (`pixel_likelihood`); on data with known factors (the 64-px shapes) also the
disentanglement scores."""

from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from genimg_jax.data import pipeline
from genimg_jax.families.vae import ground_truth
from genimg_jax.features import feature_nets
from genimg_jax.metrics import disentanglement, likelihood

EXAMPLE_BATCH = 100  # test examples bounded at once
DECODED_ELEMENTS = 2**25  # pixels decoded at once in the IWAE bound (~1 GB of activations)


def pixel_likelihood(config: ml_collections.ConfigDict) -> likelihood.PixelLikelihood:
    """The p(x|z) that `train.reconstruction` trains (`metrics.likelihood`'s module doc): the
    Bernoulli, or for "mse" the Gaussian of standard deviation `train.mse_sigma` on the data's
    pixel levels (2 when `data.binarize`, else the 256 of 8-bit images)."""
    return likelihood.PixelLikelihood(
        reconstruction=config.train.reconstruction,
        sigma=float(config.train.mse_sigma),
        levels=2 if config.data.binarize else 256,
    )


@jax.jit
def _posterior_mean(state, x: jax.Array) -> jax.Array:
    return state.apply_fn({"params": state.params}, x, method="encode")[0]


def likelihood_bounds(
    state,
    x: np.ndarray,
    rng: jax.Array,
    k: int,
    batch: int = EXAMPLE_BATCH,
    pixels: likelihood.PixelLikelihood = likelihood.BERNOULLI,
) -> tuple[np.ndarray, np.ndarray]:
    """(negative ELBO [N], IWAE bound [N]) in nats of x [N, H, W, C] under p(x|z) `pixels`,
    `batch` examples at a time (batch i with key fold_in(rng, i)), decoding as many importance
    samples at once as keep the decoded images within `DECODED_ELEMENTS`."""
    chunk = int(max(1, min(likelihood.DEFAULT_CHUNK, DECODED_ELEMENTS // (batch * x[0].size))))
    elbo, iwae = [], []
    for i, start in enumerate(range(0, len(x), batch)):
        key, part = jax.random.fold_in(rng, i), x[start : start + batch]
        elbo.append(np.asarray(likelihood.negative_elbo(state, part, key, pixels=pixels)))
        iwae.append(np.asarray(likelihood.iwae_bound(state, part, key, k, chunk, pixels)))
    return np.concatenate(elbo), np.concatenate(iwae)


def vae_scorer(
    config: ml_collections.ConfigDict, value_range: tuple[float, float] = (0.0, 1.0)
) -> Callable[..., dict]:
    """score(state) of the VAE's TrainState: likelihood bounds of `eval.examples` test images
    (`eval.iwae_k` importance samples, noise of the config's seed) under the p(x|z) of
    `train.reconstruction` (`pixel_likelihood`), and disentanglement where the data's factors
    are known."""
    num, iwae_k, seed = config.eval.examples, config.eval.iwae_k, config.seed
    pixels = pixel_likelihood(config)
    x = pipeline.model_images(
        feature_nets.load_images(config, config.data.eval_split, num)[0],
        value_range,
        config.data.binarize,  # the model was trained on, and is scored on, binary pixels
    )
    rng = jax.random.PRNGKey(seed)
    dims = int(np.prod(x.shape[1:]))
    known = ground_truth.has_known_factors(config.data)
    truth = ground_truth.for_data(config.data) if known else None

    def score(state) -> dict[str, float]:
        elbo, iwae = likelihood_bounds(state, x, rng, iwae_k, pixels=pixels)
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
    """The codes (posterior means) of the data's generative process `truth` (`ground_truth`)
    scored by `eval.disentanglement_scale`: 0, MIG and DCI (random forests) on min(num, 5000)
    codes; > 0, Locatello et al.'s study scores at that fraction of the study's sample counts
    (`metrics.disentanglement.study_scores`). Its images are fitted to the model's geometry as
    the training pipeline fits them."""
    data = config.data

    def represent(images: np.ndarray) -> np.ndarray:
        fitted = pipeline.fit_images(
            np.round(images * 255).astype(np.uint8), data.image_size, data.channels
        )
        x = pipeline.model_images(fitted, (0.0, 1.0), data.binarize)
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
