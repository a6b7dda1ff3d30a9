"""The pure VAE step: (state, batch, rng) -> (state, metrics), for β-VAE and its relatives
(`model.objective`; Locatello et al. 2019's six methods):

    L = E[L_recon] + w(t)·R,   w(t) = min(1, t / model.kl_warmup_steps) (1 when 0: no warm-up)

| objective      | R                                                                |
|----------------|------------------------------------------------------------------|
| `beta_vae`     | β·KL                                                             |
| `annealed_vae` | γ·|KL − C(t)|, C(t) = C_max·min(1, t / model.c_steps)            |
| `factor_vae`   | KL + γ·TC, TC from a discriminator on codes (`factor_vae`)       |
| `dip_vae_i`    | KL + λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)², Cov of the means |
| `dip_vae_ii`   | the same with the aggregate posterior's covariance               |
| `beta_tcvae`   | KL + (β − 1)·TC, TC by minibatch-weighted sampling               |

KL is E[KL(q(z|x) || N(0, I))] over the batch; every coefficient is traced in the state's
`hparams`, so one compiled step serves every value of a sweep. The relatives' terms are whole-
batch statistics: under pmap the step gathers the codes of all devices first, so it computes
what jit computes on the global batch (the gather's transpose sums the devices' cotangents and
the gradient mean divides them again).

The metrics `recon` and `neg_elbo` = recon + kl are in nats of the likelihood the model is
scored with (`VAEStep.likelihood`): for the Bernoulli that is the loss's reconstruction term;
for "mse" it is the Gaussian the squared error implies (`metrics.likelihood`), and the loss's
own term Σ(x − μ)² is reported as `recon_loss`.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import collectives, losses
from genimg_jax.core.state import TrainState, skipped_updates

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [0, 1], ...}
OBJECTIVES = ("beta_vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tcvae")


@dataclasses.dataclass(frozen=True)
class VAEStep:
    """Everything static about a VAE training step."""

    reconstruction: Callable[[jax.Array, jax.Array], jax.Array]  # (x, logits) -> [B] loss
    latent_dim: int
    objective: str = "beta_vae"
    # (x, logits) -> −log p(x|z) [B] nats, reported as `recon`; None: `reconstruction` is it
    likelihood: Callable[[jax.Array, jax.Array], jax.Array] | None = None


def regulariser(objective: str, hp, step, kl, mean, logvar, z, disc=None) -> tuple[jax.Array, dict]:
    """(R, its parts for the metrics) of the module doc's table from per-example kl [B],
    posterior parameters and samples [B, Z] of the whole batch, and FactorVAE's discriminator
    state `disc` (its weights are not trained by R)."""
    if objective == "beta_vae":
        return hp["beta"] * jnp.mean(kl), {}
    if objective == "annealed_vae":
        capacity = hp["c_max"] * losses.linear_ramp(step, hp["c_steps"])
        return losses.annealed_kl(kl, capacity, hp["gamma"]), {"capacity": capacity}
    if objective in ("dip_vae_i", "dip_vae_ii"):
        cov = losses.dip_covariance(mean, logvar, objective.removeprefix("dip_vae_"))
        penalty = losses.dip_penalty(cov, hp["lambda_od"], hp["lambda_d"])
        return jnp.mean(kl) + penalty, {"dip_penalty": penalty}
    if objective == "beta_tcvae":
        tc = losses.total_correlation(z, mean, logvar)
        return jnp.mean(kl) + (hp["beta"] - 1.0) * tc, {"tc": tc}
    if objective == "factor_vae":
        tc = losses.factor_vae_tc(disc.apply_fn({"params": disc.params}, z))
        return jnp.mean(kl) + hp["gamma"] * tc, {"tc": tc}
    raise ValueError(f"model.objective={objective!r}; use one of {', '.join(OBJECTIVES)}")


def vae_update(
    vae: TrainState, batch: Batch, rng: jax.Array, spec: VAEStep, axis_name, disc=None
) -> tuple[TrainState, dict, jax.Array]:
    """One update of the module doc's loss for `spec.objective` (FactorVAE's discriminator state
    `disc` estimates its TC): (new state, metrics, the whole batch's codes z [B, Z])."""
    hp, x = vae.hparams, batch["image"]
    eps = collectives.normal_rows(rng, x.shape[0], (spec.latent_dim,), axis_name)
    whole_batch = spec.objective != "beta_vae" and axis_name is not None
    gather = (lambda a: jax.lax.all_gather(a, axis_name, tiled=True)) if whole_batch else None
    warmup = losses.linear_ramp(vae.step, hp["kl_warmup_steps"])

    def loss_fn(params):
        logits, mean, logvar = vae.apply_fn({"params": params}, x, eps)
        recon, kl = spec.reconstruction(x, logits), losses.gaussian_kl(mean, logvar)
        nll = recon if spec.likelihood is None else spec.likelihood(x, logits)
        z = mean + jnp.exp(0.5 * logvar) * eps
        codes = (kl, mean, logvar, z)
        if gather is not None:
            codes = tuple(gather(a) for a in codes)
        reg, parts = regulariser(spec.objective, hp, vae.step, *codes, disc=disc)
        loss = jnp.mean(recon) + warmup * reg
        if spec.likelihood is not None:
            parts = parts | {"recon_loss": jnp.mean(recon)}
        return loss, (jnp.mean(nll), jnp.mean(kl), parts, codes[3])

    (loss, (recon, kl, parts, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(vae.params)
    grads = collectives.mean(grads, axis_name)
    metrics = collectives.mean({"loss": loss, "recon": recon, "kl": kl} | parts, axis_name)
    metrics |= {"neg_elbo": metrics["recon"] + metrics["kl"], "grad_norm": optax.tree.norm(grads)}
    new_vae = vae.apply_gradients(grads=grads)
    if (skipped := skipped_updates(new_vae)) is not None:
        metrics["skipped"] = skipped
    return new_vae, metrics, z


def vae_step(
    state: TrainState, batch: Batch, rng: jax.Array, spec: VAEStep, axis_name: str | None = None
) -> tuple[TrainState, dict]:
    """One VAE update (`vae_update`). `axis_name`: None under jit, the device axis under pmap
    (see `genimg_jax.core.collectives`)."""
    state, metrics, _ = vae_update(state, batch, rng, spec, axis_name)
    return state, metrics
