"""An autoencoder's scores on `eval.examples` held-out images (the first of `data.eval_split`):
PSNR, SSIM and (with the LPIPS weights file `eval.lpips_weights` at hand) LPIPS of their
reconstructions, rFID (the Fréchet distance between the features of the
reconstructions and of the originals, on `eval.feature_net`; none with 'none'), and for a
codebook the fraction of codes the images use and the perplexity of their frequencies."""

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax.core.family import Family
from genimg_jax.data import pipeline
from genimg_jax.families.draw import in_chunks
from genimg_jax.features import feature_nets, lpips
from genimg_jax.metrics import distances, reconstruction

SCORES = {"rfid": "min", "psnr": "max", "ssim": "max", "lpips": "min"}
CODEBOOK_SCORES = {"codebook_usage": "max", "codebook_perplexity": "max"}


def held_out(config: ml_collections.ConfigDict, num: int, value_range) -> np.ndarray:
    """The first `num` images of `data.eval_split` as the model reads them: [n, H, W, C]."""
    images, _ = feature_nets.load_images(config, config.data.eval_split, num)
    return pipeline.model_images(images, value_range, config.data.binarize)


def autoencoder_scorer(family: Family, config: ml_collections.ConfigDict) -> Callable[..., dict]:
    """score(state): the module doc's scores of the state's reconstructions."""
    lo, hi = family.value_range
    x = held_out(config, config.eval.examples, family.value_range)
    originals = (x - lo) / (hi - lo)
    net = None if config.eval.feature_net == "none" else feature_nets.for_config(config)
    real_features = net.extract(originals)[0] if net else None
    encode, decode = jax.jit(family.encode), jax.jit(family.decode)
    codebook = family.bottleneck == "vq"
    lpips_path = os.path.expanduser(config.eval.lpips_weights)
    lpips_weights = lpips.load_weights(lpips_path) if os.path.isfile(lpips_path) else None
    lpips_of = jax.jit(lambda w, pairs: lpips.distance(w, pairs[:, 0], pairs[:, 1]))

    def score(state) -> dict[str, float]:
        latents = np.concatenate(list(in_chunks(encode, state, x)))
        decoded = np.concatenate(list(in_chunks(decode, state, latents)))
        rebuilt = np.clip((decoded - lo) / (hi - lo), 0.0, 1.0)
        scores = {}
        if net:
            fake_features, _ = net.extract(rebuilt)
            scores["rfid"] = distances.frechet_distance_from_features(real_features, fake_features)
        scores["psnr"] = float(jnp.mean(reconstruction.psnr(jnp.asarray(originals), rebuilt)))
        scores["ssim"] = float(jnp.mean(reconstruction.ssim(jnp.asarray(originals), rebuilt)))
        if lpips_weights is not None:
            pairs = np.stack([originals, rebuilt], axis=1) * 2.0 - 1.0  # [N, 2, H, W, C]
            lpips_values = np.concatenate(list(in_chunks(lpips_of, lpips_weights, pairs)))
            scores["lpips"] = float(np.mean(lpips_values))
        if codebook:
            k = config.model.codebook_size
            counts = np.bincount(latents.reshape(-1), minlength=k)
            p = counts[counts > 0] / counts.sum()
            scores["codebook_usage"] = float(np.count_nonzero(counts) / k)
            scores["codebook_perplexity"] = float(np.exp(-np.sum(p * np.log(p))))
        return scores | (net.facts if net else {}) | {"num_examples": len(x)}

    return score
