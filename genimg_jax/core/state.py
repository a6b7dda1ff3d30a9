"""Training states: one Flax TrainState per network, carrying BatchNorm statistics, an EMA of
the weights and the loss hyperparameters, so that a checkpoint is the whole truth."""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from genimg_jax.core import fields

PyTree = Any


class TrainState(train_state.TrainState):
    """TrainState + BatchNorm statistics, EMA weights (or None), traced hyperparameters and the
    running statistics a loss keeps between steps."""

    batch_stats: PyTree = flax.core.FrozenDict()
    ema_params: PyTree = None
    hparams: PyTree = flax.core.FrozenDict()  # e.g. {"beta": f32[]}: traced, so sweeps share code
    stats: PyTree = flax.core.FrozenDict()  # e.g. {"ada_p": f32[]}: moved by the step itself

    @property
    def inference_params(self) -> PyTree:
        """The weights that sample, encode and are scored: the EMA when kept, else the trained."""
        return self.params if self.ema_params is None else self.ema_params

    def variables(self, params: PyTree | None = None) -> dict:
        """The Flax variables dict for `apply`, with `params` (default: the trained ones)."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


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


OPTIMIZERS = {name: getattr(optax, name) for name in fields.OPTIMIZERS}


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


def ema_warmup(decay: float, step: jax.Array) -> jax.Array:
    """The EMA decay at `step`: min(decay, (1 + step) / (10 + step)), so that early averages are
    not dominated by the random initial weights."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def with_ema(state: TrainState, decay: jax.Array) -> TrainState:
    """`state` whose EMA weights moved towards its weights: ema ← decay·ema + (1 − decay)·params."""
    ema = optax.incremental_update(state.params, state.ema_params, step_size=1.0 - decay)
    return state.replace(ema_params=ema)


def skipped_updates(state: TrainState) -> jax.Array | None:
    """How many updates `train.skip_nonfinite` skipped so far, or None when it is off."""
    return getattr(state.opt_state, "total_notfinite", None)


def create_train_state(
    module, tx, lr: float, rng, *inputs, ema: bool = False, stats: dict | None = None, **hparams
) -> TrainState:
    """A fresh TrainState of `module` initialised on `inputs`, learning rate `lr` (traced), an
    EMA copy of the weights when `ema`, `hparams` as traced float32 values and running
    `stats` (float32, starting at their given values). Built by one compiled program: op by op,
    a fresh process compiles every layer's initialisers one at a time (the main job's first
    state took 2.2x as long; docs/performance.md, "Starting a run")."""
    try:
        build = _builder(module, tx, ema)
    except TypeError:  # a module with an unhashable field (a list): a program of its own
        build = _builder.__wrapped__(module, tx, ema)
    return build(rng, inputs, lr, stats or {}, hparams)


@functools.cache
def _builder(module, tx, ema: bool):
    """`create_train_state`'s program for one network and optimizer (jit re-traces per shape)."""

    @jax.jit
    def build_train_state(rng, inputs, lr, stats, hparams):
        variables = module.init(rng, *inputs)
        params = variables["params"]
        as_f32 = lambda values: {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
        state = TrainState.create(
            apply_fn=module.apply,
            params=params,
            tx=tx,
            batch_stats=variables.get("batch_stats", flax.core.FrozenDict()),
            ema_params=jax.tree.map(jnp.copy, params) if ema else None,
            hparams=as_f32(hparams),
            stats=as_f32(stats),
        )
        return with_learning_rate(state, lr)

    return build_train_state


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """[H, W, C] of the model's images, from the data config."""
    return (config.data.image_size, config.data.image_size, config.data.channels)


def run_keys(seed: int) -> dict[str, jax.Array]:
    """Independent keys (raw uint32 [2], easy to move between hosts) for initialisation,
    training steps and sample grids."""
    init, train, sample = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"init": init, "train": train, "sample": sample}
