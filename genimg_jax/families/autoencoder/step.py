"""The pure autoencoder step: (state, batch, rng) -> (state, metrics), one update of the
autoencoder, then (with a discriminator) one of the PatchGAN on the same batch.

    L_AE = L_nll + λ·f(t)·L_G + R,      L_D = f(t)·½·L_D^table(D(x), D(sg(x̂)))

| bottleneck | L_nll (x̂ the decoder's output, r = |x − x̂| or (x − x̂)², plus w_P·P(x, x̂)) | R |
|---|---|---|
| `vq` (VQ-VAE, VQGAN; taming-transformers) | mean of r over pixels | ||sg(z_e) − e||² + β·||z_e − sg(e)||² (means; the first term only with `codebook_update="loss"`) |
| `kl` (latent diffusion's KL autoencoder) | Σ_pixels (r / e^s + s) / B, s a learned scalar log-variance | w_KL·Σ KL(q(z|x) || N(0, I)) / B |

P is the perceptual distance per image (LPIPS, or the domain classifier's; `features.perceptual`)
added to every pixel's error with weight w_P = `train.perceptual_weight`, as both references add
it. L_G is the loss table's generator loss of D(x̂) (`train.loss`), f(t) = 1 from step
`model.disc_start` on (else 0), and λ the adaptive weight of taming-transformers, taken on the
decoder's last layer W:

    λ = disc_weight · clip(‖∇_W L_nll‖ / (‖∇_W L_G‖ + 1e-4), 0, adaptive_weight_max),

not differentiated (`model.adaptive_weight_max`: taming's 1e4 by default).

With `train.ema_decay` > 0 the step also moves an average of the weights (codebook included)
towards the updated ones, ema ← d·ema + (1 − d)·params with d = min(ema_decay, (1 + t)/(10 + t))
after update t (G's warm-up); encoding, decoding and the scores then use the average.

Both gradients are taken through W alone (the features entering the last layer held fixed), as
torch.autograd.grad(loss, last_layer.weight) computes them. D reads the reconstructions of the
autoencoder's forward pass (taming recomputes them after the autoencoder's update). Under pmap
the gradients, the adaptive weight's gradients and the codebook's counts are averaged or summed
over devices, so the step computes what jit computes on the global batch.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import collectives
from genimg_jax.core import state as state_lib
from genimg_jax.core.losses import GANLoss
from genimg_jax.core.state import TrainState
from genimg_jax.families.autoencoder import quantizer
from genimg_jax.families.autoencoder.state import AutoencoderState

Array = jax.Array
RECONSTRUCTIONS = ("l1", "l2")
ADAPTIVE_EPS = 1e-4  # taming: ‖∇L_nll‖ / (‖∇L_G‖ + 1e-4)
ADAPTIVE_MAX = 1e4
LOGVAR_RANGE = (-30.0, 20.0)  # latent diffusion's clamp of the posterior's log-variance


@dataclasses.dataclass(frozen=True)
class AutoencoderStep:
    """Everything static about an autoencoder step."""

    bottleneck: str  # "vq" | "kl"
    reconstruction: str = "l1"  # "l1" | "l2"
    latent_channels: int = 4
    codebook_update: str = "loss"  # "loss" | "ema" (vq)
    loss: GANLoss | None = None  # the adversarial losses; None: no discriminator
    # (weights, x, x̂) -> [B] perceptual distance on images in [-1, 1]; None: no such term
    perceptual: Callable[[Any, Array, Array], Array] | None = None
    ema_decay: float = 0.0  # of the weights' average, when the state keeps one


def pixel_error(x: Array, x_hat: Array, kind: str) -> Array:
    """|x − x̂| ("l1") or (x − x̂)² ("l2") per element."""
    return jnp.abs(x - x_hat) if kind == "l1" else jnp.square(x - x_hat)


def gaussian_kl_sum(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, e^logvar) || N(0, I)) summed over every latent element, per example [B]."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.sum(kl.reshape(kl.shape[0], -1), axis=1)


def adaptive_weight(nll_grads, g_grads, most: Array | float = ADAPTIVE_MAX) -> Array:
    """‖∇L_nll‖ / (‖∇L_G‖ + 1e-4), clipped to [0, most] (taming's calculate_adaptive_weight,
    whose clip is 1e4)."""
    ratio = optax.tree.norm(nll_grads) / (optax.tree.norm(g_grads) + ADAPTIVE_EPS)
    return jnp.clip(ratio, 0.0, most)


def _with_last_layer(params, last):
    decoder = {**params["decoder"], "conv_out": last}
    return {**params, "decoder": decoder}


def autoencoder_step(
    state: AutoencoderState,
    batch: dict,
    rng: Array,
    spec: AutoencoderStep,
    axis_name: str | None = None,
) -> tuple[AutoencoderState, dict]:
    """One update of the autoencoder and one of its discriminator (module doc)."""
    ae, d, x = state.ae, state.d, batch["image"]
    hp, sg = ae.hparams, jax.lax.stop_gradient
    noise_key, restart_key = jax.random.split(rng)
    factor = (ae.step >= hp["disc_start"]).astype(jnp.float32)
    apply = lambda params, *args, method: ae.apply_fn({"params": params}, *args, method=method)
    discriminate = lambda images: d.apply_fn({"params": d.params}, images)

    def loss_fn(params):
        z_e = apply(params, x, method="encode")
        z, reg, parts, codes = _bottleneck(params, z_e, hp, noise_key, spec, axis_name)
        h = apply(params, z, method="decoder_features")

        def pixels(last, features: Array) -> Array:  # the decoder's last layer W = `last`
            return apply(_with_last_layer(params, last), features, method="to_pixels")

        nll_of = lambda x_hat: _nll(x, x_hat, params.get("logvar"), hp, spec, state.perceptual)
        last = params["decoder"]["conv_out"]
        x_hat = pixels(last, h)
        nll, p = nll_of(x_hat)
        parts |= {"recon": jnp.mean(pixel_error(x, x_hat, spec.reconstruction)), "nll": nll}
        if spec.perceptual is not None:
            parts["perceptual"] = jnp.mean(p)
        loss = nll + reg
        if spec.loss is not None:
            g_loss = spec.loss.g_loss(discriminate(x_hat))
            # the adaptive weight: both gradients on the last layer alone (module doc)
            frozen, features = sg(last), sg(h)
            nll_grads = jax.grad(lambda w: nll_of(pixels(w, features))[0])(frozen)
            g_of = lambda w: spec.loss.g_loss(discriminate(pixels(w, features)))
            g_grads = jax.grad(g_of)(frozen)
            nll_grads, g_grads = collectives.mean((nll_grads, g_grads), axis_name)
            ratio = adaptive_weight(nll_grads, g_grads, hp["adaptive_weight_max"])
            weight = sg(hp["disc_weight"] * ratio)
            loss = loss + weight * factor * g_loss
            parts |= {"g_loss": g_loss, "adaptive_weight": weight}
        return loss, (parts, codes, x_hat, z_e)

    (loss, (parts, codes, x_hat, z_e)), grads = jax.value_and_grad(loss_fn, has_aux=True)(ae.params)
    grads = collectives.mean(grads, axis_name)
    metrics = collectives.mean({"loss": loss} | parts, axis_name)
    metrics["grad_norm"] = optax.tree.norm(grads)
    new_ae = ae.apply_gradients(grads=grads)
    if spec.bottleneck == "vq":
        new_ae, vq = _update_codebook(new_ae, ae.step, codes, z_e, restart_key, spec, axis_name)
        metrics |= vq
    if new_ae.ema_params is not None:  # the average of the weights the update ended with
        new_ae = state_lib.with_ema(new_ae, state_lib.ema_warmup(spec.ema_decay, new_ae.step))
    new_d = d
    if spec.loss is not None:
        new_d, d_metrics = _discriminator_update(d, x, sg(x_hat), factor, spec, axis_name)
        metrics |= d_metrics
    return state.replace(ae=new_ae, d=new_d), metrics


def _nll(x: Array, x_hat: Array, logvar, hp, spec: AutoencoderStep, perceptual) -> tuple:
    """(L_nll, the perceptual distance per image [B]): the module doc's table; `logvar` is the
    KL autoencoder's learned log-variance (None for a codebook)."""
    error = pixel_error(x, x_hat, spec.reconstruction)
    p = jnp.zeros((x.shape[0],))
    if spec.perceptual is not None:
        p = spec.perceptual(perceptual, x, x_hat)
        error = error + hp["perceptual_weight"] * p.reshape(-1, 1, 1, 1)
    if spec.bottleneck == "vq":
        return jnp.mean(error), p
    per_example = jnp.sum((error / jnp.exp(logvar) + logvar).reshape(x.shape[0], -1), axis=1)
    return jnp.mean(per_example), p


def _bottleneck(params, z_e: Array, hp, key: Array, spec: AutoencoderStep, axis_name):
    """(the decoder's input z, the regulariser R, its metrics, the codes or None) of the
    encoder's output z_e: the straight-through quantised latents, or a posterior sample."""
    if spec.bottleneck == "vq":
        q = quantizer.quantize(z_e, params["codebook"])
        reg = hp["commitment"] * q.commitment_loss
        if spec.codebook_update == "loss":
            reg = reg + q.codebook_loss
        parts = {"codebook_loss": q.codebook_loss, "commitment_loss": q.commitment_loss}
        return q.z_q, reg, parts, q.codes
    mean, logvar = jnp.split(z_e, 2, axis=-1)
    logvar = jnp.clip(logvar, *LOGVAR_RANGE)
    eps = collectives.normal_rows(key, z_e.shape[0], mean.shape[1:], axis_name)
    kl = jnp.mean(gaussian_kl_sum(mean, logvar))
    parts = {"kl": kl, "logvar": params["logvar"]}
    return mean + jnp.exp(0.5 * logvar) * eps, hp["kl_weight"] * kl, parts, None


def _discriminator_update(
    d: TrainState, x: Array, fake: Array, factor: Array, spec: AutoencoderStep, axis_name
) -> tuple[TrainState, dict]:
    """One update of D on the real images and the (held) reconstructions."""

    def d_loss_fn(params):
        real_logits = d.apply_fn({"params": params}, x)
        fake_logits = d.apply_fn({"params": params}, fake)
        means = (jnp.mean(real_logits), jnp.mean(fake_logits))
        return factor * 0.5 * spec.loss.d_loss(real_logits, fake_logits), means

    (d_loss, (real_mean, fake_mean)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        d.params
    )
    d_grads = collectives.mean(d_grads, axis_name)
    metrics = collectives.mean(
        {"d_loss": d_loss, "d_real": real_mean, "d_fake": fake_mean}, axis_name
    )
    return d.apply_gradients(grads=d_grads), metrics | {"d_grad_norm": optax.tree.norm(d_grads)}


def _update_codebook(
    ae: TrainState, step: Array, codes: Array, z_e: Array, rng: Array, spec, axis_name
) -> tuple[TrainState, dict]:
    """The codebook's moving averages, EMA rewrite and restarts (`quantizer.update`) from the
    global batch's codes and latents."""
    hp, codebook = ae.hparams, ae.params["codebook"]
    k = codebook.shape[0]
    counts = quantizer.code_counts(codes, k)
    sums = quantizer.code_sums(codes, z_e, k) if spec.codebook_update == "ema" else None
    candidates = jax.lax.stop_gradient(z_e).reshape(-1, z_e.shape[-1])  # [rows·h·w, D]
    if axis_name is not None:  # the global batch's, in its order (device-major = row-major)
        counts, sums = jax.lax.psum((counts, sums), axis_name)
        candidates = jax.lax.all_gather(candidates, axis_name, tiled=True)
    stats = quantizer.CodebookStats(ae.stats["code_count"], ae.stats.get("code_total"))
    codebook, stats, restarted = quantizer.update(
        codebook,
        stats,
        counts,
        sums,
        candidates,
        rng,
        step,
        hp["codebook_decay"],
        hp["dead_code_threshold"],
    )
    new_stats = {**ae.stats, "code_count": stats.count}
    if stats.total is not None:
        new_stats["code_total"] = stats.total
    ae = ae.replace(params={**ae.params, "codebook": codebook}, stats=new_stats)
    metrics = {
        "perplexity": quantizer.perplexity(counts),
        "codes_used": jnp.mean((counts > 0).astype(jnp.float32)),
        "codes_restarted": restarted.astype(jnp.float32),
    }
    return ae, metrics
