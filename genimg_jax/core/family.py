"""Model families as objects. A `Family` carries everything that differs between kinds of
generative model: its config fields and their validation, its networks, its training state and
step, its sample grids, its samples and its scores. The loop, the checkpoints and the commands
only talk to this contract, so a family added from a user's own module (README, "Adding a model
family") trains, resumes, samples and is scored like the built-in ones.

A family is registered under the name `config.model.family` selects. A family defined outside
the package is registered when its module is imported: the config names that module in
`model.family_module`, which is saved with the run's config.json, so `genimg train --workdir`,
`genimg sample` and `genimg eval` import it again.
"""

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections

Rules = dict[str, tuple[Callable[[Any], bool], str]]  # field -> (check, what is allowed)


class Family:
    """The contract of a model family. The built-in ones are `families.gan.GANFamily` (a
    generator and a discriminator) and `families.vae.VAEFamily` (one encoder-decoder)."""

    # The pixel range the family trains on and draws in.
    value_range: tuple[float, float] = (0.0, 1.0)
    # Config fields traced in the state (learning rates, loss weights): runs that differ only in
    # these (and `seed`) share one compiled step and can be one vectorized program.
    hyperparameters: tuple[str, ...] = ()

    def add_defaults(self, config: ml_collections.ConfigDict) -> None:
        """Adds the family's fields (with defaults) to the shared base config."""

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        """{field: (check, allowed)} for the family's fields; `config.validate` applies them."""
        return {}

    def build(self, config: ml_collections.ConfigDict) -> Any:
        """The family's Flax modules for `config` (without its hyperparameters)."""
        raise NotImplementedError

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> Any:
        """A fresh training state: a pytree holding one `state.TrainState` per network."""
        raise NotImplementedError

    def apply_hparams(self, state: Any, config: ml_collections.ConfigDict) -> Any:
        """`state` with the config's hyperparameters written in (a resumed run's overrides)."""
        return state

    def networks(self, state: Any) -> Mapping[str, Any]:
        """{name a message uses: TrainState} of every network in `state`."""
        raise NotImplementedError

    def real_batches_per_step(self, config: ml_collections.ConfigDict) -> int:
        """Independent real batches each training step takes (stacked on the batch's axis 1
        when more than one): a GAN's critic draws a fresh one for each of its updates."""
        return 1

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None) -> Callable:
        """The pure step (state, batch, rng) -> (state, metrics); `axis_name` is the device
        axis under pmap, None under jit (see `genimg_jax.parallel`)."""
        raise NotImplementedError

    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        """The fixed inputs (arrays) of the sample grids a run shows at each evaluation."""
        raise NotImplementedError

    def sample_grids(self, state: Any, **inputs: jax.Array) -> dict[str, jax.Array]:
        """{grid name: images [N, H, W, C]} from `grid_inputs` (jitted by the loop)."""
        raise NotImplementedError

    def samples(self, state: Any, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        """Images [N, H, W, C] in `value_range` from latents z [N, latent_dim] and, for a
        conditional model, the classes int32 [N] to draw (`sampling.class_labels`; else None)
        (jitted)."""
        raise NotImplementedError

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        """{score: "min" | "max"} of the scores `make_scorer` reports (for `eval.best_metric`)."""
        return {}

    def make_scorer(self, config: ml_collections.ConfigDict) -> Callable[[Any], dict]:
        """score(state) -> {name: number}, used at evaluations and by `genimg eval`."""
        raise NotImplementedError


_REGISTRY: dict[str, Family] = {}
BUILT_IN = "genimg_jax.families"  # registers dcgan, resnet_gan, stylegan2, conv_vae, mlp_vae


def register(name: str, family: Family) -> Family:
    """Makes `family` available as `model.family=name`; returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"register({name!r}, ...) takes a genimg_jax.family.Family instance")
    _REGISTRY[name] = family
    return family


def names() -> list[str]:
    """The registered family names."""
    importlib.import_module(BUILT_IN)
    return sorted(_REGISTRY)


def get(name: str, module: str = "") -> Family:
    """The family registered as `name`, importing `module` first (the config's
    `model.family_module`, where the family of a user's own code is registered). Raises a
    ValueError naming the known families."""
    importlib.import_module(BUILT_IN)
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


def of(config: ml_collections.ConfigDict) -> Family:
    """The family `config.model` selects."""
    return get(config.model.family, config.model.get("family_module", ""))
