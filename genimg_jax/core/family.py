"""Model families as objects. A `Family` carries everything that differs between kinds of
generative model: its config fields, their defaults, validation and `:quick` shrinking, its
networks, its training state and step, its sample grids, its samples and its scores. The loop,
the checkpoints and the commands only talk to this contract, so a family added from a user's own
module (README, "Adding a model family") trains, resumes, samples and is scored like the
built-in ones (`genimg_jax/families/`, one folder each).

A family is registered under the name `config.model.family` selects. A family defined outside
the package is registered when its module is imported: the config names that module in
`model.family_module`, which is saved with the run's config.json, so `genimg train --workdir`,
`genimg sample` and `genimg eval` import it again.
"""

import abc
import dataclasses
import functools
import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import optax

from genimg_jax.core import state as state_lib
from genimg_jax.core.errors import ConfigError
from genimg_jax.core.fields import Rules

Step = Callable[[Any, dict, jax.Array], tuple[Any, dict]]  # (state, batch, rng) -> (state, metrics)


@dataclasses.dataclass(frozen=True)
class SweepAxes:
    """The family's fields and metrics a sweep's report plots (`sweeps.report`): `rate`, a
    regulariser's weight for rate-distortion curves of `kl` against `recon` ("" = none);
    `method`, a field naming methods for a study's box plots ("" = none); `learning_rates`,
    the fields `losses` are plotted against."""

    rate: str = ""
    method: str = ""
    learning_rates: tuple[str, ...] = ()
    losses: tuple[str, ...] = ("loss",)


# What a command is told when the family leaves an optional method out (`Family.check_offers`).
_LEFT_OUT = {
    "samples": "draws no samples from noise: it encodes and decodes images (genimg reconstruct, "
    "genimg encode, genimg decode)",
    "encode": "has no encoder: genimg reconstruct, encode and decode need an autoencoder or a VAE",
    "decode": "has no decoder of latents: genimg decode needs an autoencoder or a VAE",
}


class Family(abc.ABC):
    """The contract of a model family: every abstract method must be written; the others have
    defaults that fit most families. The built-in ones are `families.gan.GANFamily` (a generator
    and a discriminator; `families.stylegan2` refines it) and `families.vae.VAEFamily` (one
    encoder-decoder; `families.vae.FactorVAEFamily` adds a discriminator on its codes)."""

    # The pixel range the family trains on and draws in.
    value_range: tuple[float, float] = (0.0, 1.0)
    # Config fields traced in the state (learning rates, loss weights): runs that differ only in
    # these (and `seed`) share one compiled step and can be one vectorized program.
    hyperparameters: tuple[str, ...] = ()
    # What a sweep's report plots for the family's members.
    sweep_axes: SweepAxes = SweepAxes()

    # -- config --------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_defaults(self, config: ml_collections.ConfigDict) -> None:
        """Adds the family's fields (with defaults) to the shared base config, including
        `eval.best_metric` where the family keeps a best checkpoint (a key of `score_modes`)."""

    @abc.abstractmethod
    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        """{field: (check, allowed)} for the family's fields; `config.validate` applies them."""

    def shrink_for_tests(self, config: ml_collections.ConfigDict) -> None:
        """The family's part of a `:quick` variant: its networks made tiny (the shared part sets
        latent size, steps and intervals)."""

    def check_data(self, config: ml_collections.ConfigDict) -> None:
        """Raises ConfigError when the config's data cannot serve the family (labels a
        conditional model needs, ...); called before data preparation, nothing is built."""

    def resolve(self, config: ml_collections.ConfigDict) -> "Family":
        """The family object that trains `config`: itself, or a variant its fields select (the
        VAE family's FactorVAE for `model.objective="factor_vae"`)."""
        return self

    # -- networks and state --------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, config: ml_collections.ConfigDict) -> Any:
        """The family's Flax modules for `config` (without its hyperparameters)."""

    def make_optimizer(self, config: ml_collections.ConfigDict) -> optax.GradientTransformation:
        """The optimizer of the family's networks (`core.state.make_optimizer` of `train`)."""
        return state_lib.make_optimizer(config.train)

    def static_parts(self, config: ml_collections.ConfigDict) -> tuple[Any, Any]:
        """(modules, optimizer) of `config`, the same objects for every config equal up to
        `hyperparameters`: their states then share a treedef, hence one compiled step. A
        family's `create_state` takes its modules and optimizer from here."""
        return _static_parts(self, self.static_key(config))

    def static_key(self, config: ml_collections.ConfigDict) -> str:
        """`config` as JSON without its hyperparameters: equal for runs that can share programs."""
        values = json.loads(config.to_json_best_effort())
        for field in ("seed", *self.hyperparameters):
            section, _, key = field.rpartition(".")
            node = values
            for part in section.split(".") if section else ():
                node = node[part]
            node.pop(key, None)
        return json.dumps(values, sort_keys=True)

    @abc.abstractmethod
    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> Any:
        """A fresh training state: a pytree holding one `core.state.TrainState` per network,
        built from `static_parts(config)`."""

    @abc.abstractmethod
    def apply_hparams(self, state: Any, config: ml_collections.ConfigDict) -> Any:
        """`state` with the config's hyperparameters written in (a resumed run's overrides)."""

    @abc.abstractmethod
    def networks(self, state: Any) -> Mapping[str, Any]:
        """{name a message uses: TrainState} of every network in `state`."""

    # -- training ------------------------------------------------------------------------------
    def real_batches_per_step(self, config: ml_collections.ConfigDict) -> int:
        """Independent real batches each training step takes (stacked on the batch's axis 1
        when more than one): a GAN's critic draws a fresh one for each of its updates."""
        return 1

    @abc.abstractmethod
    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None) -> Step:
        """The pure step (state, batch, rng) -> (state, metrics); `axis_name` is the device
        axis under pmap, None under jit: the step must compute under pmap what it computes
        under jit on the global batch (`core.collectives`)."""

    # -- samples and scores --------------------------------------------------------------------
    @abc.abstractmethod
    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        """The fixed inputs (arrays) of the sample grids a run shows at each evaluation."""

    @abc.abstractmethod
    def sample_grids(self, state: Any, **inputs: jax.Array) -> dict[str, jax.Array]:
        """{grid name: images [N, H, W, C]} from `grid_inputs` (jitted by the loop)."""

    def samples(self, state: Any, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        """Images [N, H, W, C] in `value_range` from latents z [N, latent_dim] and, for a
        conditional model, the classes int32 [N] to draw (`families.draw.class_labels`; else
        None) (jitted). A family that draws nothing from noise (an autoencoder) leaves it."""
        raise self._left_out("samples")

    def encode(self, state: Any, x: jax.Array) -> jax.Array:
        """Images [N, H, W, C] in `value_range` -> what `decode` reads back: latents or codes
        (jitted). A family without an encoder leaves it."""
        raise self._left_out("encode")

    def decode(self, state: Any, latents: jax.Array) -> jax.Array:
        """`encode`'s latents or codes -> images [N, H, W, C] in `value_range` (jitted)."""
        raise self._left_out("decode")

    def check_offers(self, *methods: str) -> None:
        """Raises the ConfigError of the first of the optional `methods` ("samples", "encode",
        "decode") the family leaves out: what a command checks before it reads a checkpoint."""
        for method in methods:
            if getattr(type(self), method) is getattr(Family, method):
                raise self._left_out(method)

    def _left_out(self, method: str) -> ConfigError:
        return ConfigError(f"model family {type(self).__name__} {_LEFT_OUT[method]}")

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        """{score: "min" | "max"} of the scores `make_scorer` reports (for `eval.best_metric`)."""
        return {}

    @abc.abstractmethod
    def make_scorer(self, config: ml_collections.ConfigDict) -> Callable[[Any], dict]:
        """score(state) -> {name: number}, used at evaluations and by `genimg eval`."""


@functools.lru_cache(maxsize=32)
def _static_parts(family: Family, key: str) -> tuple[Any, Any]:
    config = ml_collections.ConfigDict(json.loads(key))
    return family.build(config), family.make_optimizer(config)


_REGISTRY: dict[str, Family] = {}


def register(name: str, family: Family) -> Family:
    """Makes `family` available as `model.family=name`; returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"register({name!r}, ...) takes a genimg_jax.core.family.Family instance")
    _REGISTRY[name] = family
    return family


def lookup(name: str, module: str = "") -> Family:
    """The family registered as `name`, importing the user's `module` first (the config's
    `model.family_module`, where a family of the user's own code is registered). Raises a
    ValueError naming the known families. The built-in families are registered by importing
    `genimg_jax.families`, whose `get` callers use."""
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(
                f"model.family_module={module!r} cannot be imported ({e}); put it on PYTHONPATH"
            ) from None
    if name not in _REGISTRY:
        where = f" (after importing {module})" if module else ""
        raise ValueError(
            f"model.family={name!r} is unknown{where}; known families: {sorted(_REGISTRY)}. "
            "A family from your own module is registered with genimg_jax.register_family and "
            "named in model.family_module"
        )
    return _REGISTRY[name]
