"""Vector quantisation (van den Oord et al. 2017) as pure functions of latents and a codebook.

Each latent vector z_e [D] is replaced by its nearest code e_k of the codebook [K, D]; the
decoder reads z_q = z_e + sg(e_k − z_e) (straight-through: the encoder gets the decoder's
gradient unchanged). The codebook learns either

- by its loss ("loss"): ||sg(z_e) − e_k||², with the commitment β·||z_e − sg(e_k)||² on the
  encoder (β = `model.commitment`, 0.25), or
- by exponential moving averages ("ema", the paper's appendix; Sonnet's VectorQuantizerEMA):
  N_k ← γN_k + (1 − γ)n_k, m_k ← γm_k + (1 − γ)Σ_{z_e → k} z_e, e_k = m_k / Ñ_k with Laplace-
  smoothed counts Ñ_k = (N_k + ε)/(ΣN + Kε)·ΣN; the encoder keeps only the commitment.

Codes stay alive by restarts (Dhariwal et al. 2020's Jukebox; SoundStream): a code whose moving
average of assignments per step (bias-corrected) is below `model.dead_code_threshold` is
replaced by a random latent of the current batch. At the first step every unused code is
restarted, which initialises the codebook from the data; later restarts revive codes the
encoder has moved away from. This works for both codebook updates, needs no pass over the data
before training (k-means initialisation would) and keeps the step a pure function of
(state, batch, rng). Under pmap the counts and sums are summed over devices and the restart
draws from the gathered batch, so every device writes the same codebook, and the same as jit.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
CODEBOOK_UPDATES = ("loss", "ema")
EPSILON = 1e-5  # the Laplace smoothing of the EMA counts


def nearest_codes(z: Array, codebook: Array) -> Array:
    """argmin_k ||z_i − e_k||² for z [..., D] and codebook [K, D]: int32 [...]."""
    flat = z.reshape(-1, z.shape[-1])
    distances = (
        jnp.sum(jnp.square(flat), axis=1, keepdims=True)
        - 2.0 * flat @ codebook.T
        + jnp.sum(jnp.square(codebook), axis=1)[None, :]
    )
    return jnp.argmin(distances, axis=1).astype(jnp.int32).reshape(z.shape[:-1])


def lookup(codes: Array, codebook: Array) -> Array:
    """The codes' vectors: int [...] -> [..., D]."""
    return jnp.take(codebook, codes, axis=0)


class Quantized(NamedTuple):
    z_q: Array  # [B, h, w, D]: z_e + sg(e − z_e)
    codes: Array  # int32 [B, h, w]
    codebook_loss: Array  # E||sg(z_e) − e||² (per element)
    commitment_loss: Array  # E||z_e − sg(e)||² (per element)


def quantize(z_e: Array, codebook: Array) -> Quantized:
    """The nearest codes of latents z_e [B, h, w, D], the straight-through z_q and the two loss
    terms as means over elements (taming-transformers' scaling)."""
    codes = nearest_codes(jax.lax.stop_gradient(z_e), codebook)
    e = lookup(codes, codebook)
    sg = jax.lax.stop_gradient
    return Quantized(
        z_q=z_e + sg(e - z_e),
        codes=codes,
        codebook_loss=jnp.mean(jnp.square(sg(z_e) - e)),
        commitment_loss=jnp.mean(jnp.square(z_e - sg(e))),
    )


def code_counts(codes: Array, k: int) -> Array:
    """Assignments per code [K] (float32)."""
    return jnp.zeros((k,), jnp.float32).at[codes.reshape(-1)].add(1.0)


def code_sums(codes: Array, z: Array, k: int) -> Array:
    """Σ of the latents assigned to each code: [K, D]."""
    flat = z.reshape(-1, z.shape[-1]).astype(jnp.float32)
    return jnp.zeros((k, flat.shape[-1]), jnp.float32).at[codes.reshape(-1)].add(flat)


def perplexity(counts: Array) -> Array:
    """exp(entropy) of the codes' frequencies: K when all are used equally, 1 for one code."""
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def debias(value: Array, decay: Array, step: Array) -> Array:
    """A moving average started at 0, divided by 1 − γ^(t+1) after its (t+1)-th update."""
    return value / (1.0 - decay ** (step + 1.0))


def ema_codebook(count: Array, total: Array) -> Array:
    """e_k = m_k / Ñ_k with Laplace-smoothed counts (module doc): count [K], total [K, D]."""
    n = jnp.sum(count)
    smoothed = (count + EPSILON) / (n + count.shape[0] * EPSILON) * n
    return total / smoothed[:, None]


class CodebookStats(NamedTuple):
    """What the step keeps between steps (the state's `stats`): the moving average of each
    code's assignments per step [K], and for EMA updates the average of their sums [K, D]."""

    count: Array
    total: Array | None


def update(
    codebook: Array,
    stats: CodebookStats,
    counts: Array,
    sums: Array | None,
    candidates: Array,
    rng: Array,
    step: Array,
    decay: Array,
    threshold: Array,
) -> tuple[Array, CodebookStats, Array]:
    """(codebook, stats, number of restarted codes) after a step whose (global) batch assigned
    `counts` [K] latents (summing to `sums` [K, D] for EMA updates, else None) and whose latents
    are `candidates` [N, D]: the moving averages moved, the EMA codebook rewritten, then every
    code below `threshold` (bias-corrected assignments per step) replaced by a random candidate."""
    step = jnp.asarray(step, jnp.float32)
    count = decay * stats.count + (1.0 - decay) * counts
    total = None if sums is None else decay * stats.total + (1.0 - decay) * sums
    if total is not None:
        codebook = ema_codebook(count, total)
    dead = debias(count, decay, step) < threshold
    picks = jax.random.randint(rng, (codebook.shape[0],), 0, candidates.shape[0])
    fresh = candidates[picks].astype(codebook.dtype)
    codebook = jnp.where(dead[:, None], fresh, codebook)
    revived = threshold * (1.0 - decay ** (step + 1.0))  # debiased: threshold
    count = jnp.where(dead, revived, count)
    if total is not None:
        total = jnp.where(dead[:, None], fresh * count[:, None], total)
    return codebook, CodebookStats(count, total), jnp.sum(dead)
