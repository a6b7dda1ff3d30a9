"""Training states: one Flax TrainState per network, carrying BatchNorm statistics, an EMA of
the weights and the loss hyperparameters, so that a checkpoint is the whole truth."""

import functools
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state
from jax.sharding import Mesh

from genimg_jax import config as config_lib
from genimg_jax.core import family
from genimg_jax.runtime import parallel

PyTree = Any


class TrainState(train_state.TrainState):
    """TrainState + BatchNorm statistics, EMA weights (or None) and traced hyperparameters."""

    batch_stats: PyTree = flax.core.FrozenDict()
    ema_params: PyTree = None
    hparams: PyTree = flax.core.FrozenDict()  # e.g. {"beta": f32[]}: traced, so sweeps share code

    def variables(self, params: PyTree | None = None) -> dict:
        """The Flax variables dict for `apply`, with `params` (default: the trained ones)."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


@flax.struct.dataclass
class GANState:
    """The generator's and the discriminator's states; `step` counts G updates."""

    g: TrainState
    d: TrainState

    @property
    def step(self) -> jax.Array:
        return self.g.step


@flax.struct.dataclass
class FactorVAEState:
    """FactorVAE's VAE and the discriminator that estimates the total correlation of its codes
    (`models.latent_discriminator`). Reads as the VAE's TrainState where sampling and scoring
    need one (`step`, `params`, `apply_fn`, `hparams`)."""

    vae: TrainState
    disc: TrainState

    step = property(lambda self: self.vae.step)
    params = property(lambda self: self.vae.params)
    apply_fn = property(lambda self: self.vae.apply_fn)
    hparams = property(lambda self: self.vae.hparams)


def schedule_fraction(train: ml_collections.ConfigDict) -> optax.Schedule | None:
    """lr(t) / lr for `train.schedule` ("constant" or "cosine") after a linear warm-up of
    `train.warmup_steps`; None when it is 1 throughout."""
    if train.schedule == "constant":
        decay = optax.constant_schedule(1.0)
    elif train.schedule == "cosine":
        decay = optax.cosine_decay_schedule(1.0, max(train.steps - train.warmup_steps, 1))
    else:
        raise ValueError(f"train.schedule={train.schedule!r}; use 'constant' or 'cosine'")
    if train.warmup_steps <= 0:
        return None if train.schedule == "constant" else decay
    warmup = optax.linear_schedule(0.0, 1.0, train.warmup_steps)
    return optax.join_schedules([warmup, decay], [train.warmup_steps])


OPTIMIZERS = {name: getattr(optax, name) for name in config_lib.OPTIMIZERS}


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """`train.optimizer` with its learning rate held in the optimizer state (inject_hyperparams;
    set it with `with_learning_rate`) as a traced value, so one compiled step serves every
    learning rate of a sweep; the schedule multiplies it."""
    kwargs = {"b1": train.b1, "b2": train.b2}
    if train.optimizer == "adamw":
        kwargs["weight_decay"] = train.weight_decay
    opt = optax.inject_hyperparams(OPTIMIZERS[train.optimizer])(learning_rate=0.0, **kwargs)
    if (fraction := schedule_fraction(train)) is not None:
        opt = optax.chain(opt, optax.scale_by_schedule(fraction))
    if train.grad_clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(train.grad_clip_norm), opt)
    if train.skip_nonfinite:  # skip (and count) updates whose gradients are not finite
        opt = optax.apply_if_finite(opt, max_consecutive_errors=2**30)
    return opt


def with_learning_rate(state: TrainState, lr: float | jax.Array) -> TrainState:
    """`state` whose optimizer uses learning rate `lr` from now on."""
    lr = jnp.asarray(lr, jnp.float32)
    return state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=lr))


def apply_hparams(state, config: ml_collections.ConfigDict):
    """The config's hyperparameters (learning rates, β) written into a (restored) state: the
    config is the truth when a run resumes with overrides."""
    return family.of(config).apply_hparams(state, config)


def skipped_updates(state: TrainState) -> jax.Array | None:
    """How many updates `train.skip_nonfinite` skipped so far, or None when it is off."""
    return getattr(state.opt_state, "total_notfinite", None)


@functools.lru_cache(maxsize=32)
def _static_parts(key: str) -> tuple[Any, optax.GradientTransformation]:
    """The family's modules and the optimizer for a config without its hyperparameters. Cached:
    runs that differ only in seed, learning rates or β share these objects, hence the treedef
    of their states, hence one compiled step."""
    config = ml_collections.ConfigDict(json.loads(key))
    return family.of(config).build(config), make_optimizer(config.train)


def static_key(config: ml_collections.ConfigDict) -> str:
    """`config` as JSON without its hyperparameters: equal for runs that can share programs."""
    values = json.loads(config.to_json_best_effort())
    for field in hyperparameters(config):
        section, _, key = field.rpartition(".")
        (values[section] if section else values).pop(key, None)
    return json.dumps(values, sort_keys=True)


def static_parts(config: ml_collections.ConfigDict) -> tuple[Any, optax.GradientTransformation]:
    """(modules, optimizer) of `config`, shared by every config equal up to hyperparameters."""
    return _static_parts(static_key(config))


def hyperparameters(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The fields runs may differ in and still share one compiled step: the seed and the
    family's traced hyperparameters."""
    return ("seed", *family.of(config).hyperparameters)


def create_train_state(
    module, tx, lr: float, rng, *inputs, ema: bool = False, **hparams
) -> TrainState:
    """A fresh TrainState of `module` initialised on `inputs`, learning rate `lr` (traced), an
    EMA copy of the weights when `ema`, and `hparams` as traced float32 values."""
    variables = module.init(rng, *inputs)
    params = variables["params"]
    state = TrainState.create(
        apply_fn=module.apply,
        params=params,
        tx=tx,
        batch_stats=variables.get("batch_stats", flax.core.FrozenDict()),
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
    )
    return with_learning_rate(state, lr)


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """[H, W, C] of the model's images, from the data config."""
    return (config.data.image_size, config.data.image_size, config.data.channels)


def create_state(config: ml_collections.ConfigDict, rng: jax.Array) -> Any:
    """The initial state of the family named in `config.model.family`."""
    return family.of(config).create_state(config, rng)


def run_keys(seed: int) -> dict[str, jax.Array]:
    """Independent keys (raw uint32 [2], easy to move between hosts) for initialisation,
    training steps and sample grids."""
    init, train, sample = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"init": init, "train": train, "sample": sample}


def initial_state(config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
    """The freshly initialised state as global arrays replicated over the mesh: the layout that
    checkpoints are written and restored in, whatever the strategy or device count."""
    return parallel.replicate_global(create_state(config, run_keys(config.seed)["init"]), mesh)
