"""Config validation: every shipped config is valid; bad values name the field and the fix."""

import os

import pytest
from absl import flags
from conftest import REPO, load_config
from ml_collections import config_flags

from genimg_jax.config import ConfigError, from_file, validate

CONFIGS = [
    "dcgan_mnist",
    "dcgan_mnist_uncond",
    "vae_mnist",
    "beta_vae_shapes",
    "sngan_cifar10",
    "wgan_gp_mnist",
    "vae_binary_mnist",
    "stylegan2_mnist",
    "stylegan2_cifar10",
    "vq_vae_mnist",
    "vqgan_mnist",
    "kl_autoencoder_mnist",
    "vqgan_shapes",
]
KIND_FIELDS = {  # fields every config of a kind of family has
    "gan": ["train.g_lr", "train.d_lr"],
    "vae": ["model.beta", "train.lr"],
    "autoencoder": ["train.lr", "model.disc_weight", "model.commitment", "model.kl_weight"],
}
SHARED_FIELDS = [
    "seed",
    "model.family",
    "data.name",
    "train.steps",
    "train.batch_size",
    "train.log_every",
    "train.checkpoint_every",
    "eval.every",
]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "quick"])
def test_shipped_configs_are_valid_and_share_field_names(name, arg):
    config = validate(load_config(name, arg))
    for field in SHARED_FIELDS:
        node = config
        for part in field.split("."):
            node = node[part]
    family = config.model.family
    kind = "vae" if family.endswith("_vae") and family != "vq_vae" else "gan"
    kind = "autoencoder" if family in ("vq_vae", "vqgan", "kl_autoencoder") else kind
    for field in KIND_FIELDS[kind]:
        section, key = field.split(".")
        assert key in config[section]


BAD = [
    ("dcgan_mnist", "model.family", "stylegan9", "known families"),
    ("dcgan_mnist", "train.g_lr", 0.0, "train.g_lr"),
    ("dcgan_mnist", "train.d_lr", -1e-3, "train.d_lr"),
    ("dcgan_mnist", "train.loss", "hinge_typo", "train.loss"),
    ("dcgan_mnist", "train.ema_decay", 1.0, "train.ema_decay"),
    ("dcgan_mnist", "data.image_size", 48, "data.image_size"),
    ("dcgan_mnist", "data.channels", 2, "data.channels"),
    ("dcgan_mnist", "train.batch_size", 0, "train.batch_size"),
    ("dcgan_mnist", "train.steps", -5, "train.steps"),
    ("dcgan_mnist", "train.optimizer", "adamax", "train.optimizer"),
    ("dcgan_mnist", "train.b1", 1.5, "train.b1"),
    ("vae_mnist", "model.beta", -1.0, "model.beta"),
    ("vae_mnist", "model.beta", float("nan"), "model.beta"),
    ("vae_mnist", "train.lr", float("inf"), "train.lr"),
    ("vae_mnist", "train.reconstruction", "gaussian_typo", "train.reconstruction"),
    ("vae_mnist", "train.schedule", "linear", "train.schedule"),
    ("vae_mnist", "eval.every", 0, "eval.every"),
    ("vae_mnist", "model.latent_dim", 0, "model.latent_dim"),
    ("vae_mnist", "model.width", -8, "model.width"),
    ("vae_mnist", "model.hidden", 0, "model.hidden"),
    ("vae_mnist", "train.keep_checkpoints", 0, "train.keep_checkpoints"),
    ("vae_mnist", "train.log_every", 0, "train.log_every"),
    ("vae_mnist", "train.checkpoint_every", -1, "train.checkpoint_every"),
    ("vae_mnist", "train.warmup_steps", -10, "train.warmup_steps"),
    ("vae_mnist", "train.grad_clip_norm", -1.0, "train.grad_clip_norm"),
    ("vae_mnist", "train.weight_decay", -0.1, "train.weight_decay"),
    ("vae_mnist", "train.b2", 1.0, "train.b2"),
    ("vae_mnist", "train.compute_dtype", "float16", "train.compute_dtype"),
    ("vae_mnist", "parallel.strategy", "shard_map", "parallel.strategy"),
    ("vae_mnist", "parallel.num_devices", -1, "parallel.num_devices"),
    ("vae_mnist", "parallel.multihost", "maybe", "parallel.multihost"),
    ("vae_mnist", "eval.num_samples", 0, "eval.num_samples"),
    ("vae_mnist", "seed", -3, "seed"),
    ("vae_mnist", "data.name", "", "data.name"),
    ("dcgan_mnist", "train.d_steps", 0, "train.d_steps"),
    ("dcgan_mnist", "model.g_width", 0, "model.g_width"),
    ("dcgan_mnist", "model.d_width", 0, "model.d_width"),
    ("sngan_cifar10", "train.loss", "hinge_gan", "train.loss"),
    ("sngan_cifar10", "model.num_classes", -1, "model.num_classes"),
    ("sngan_cifar10", "model.num_classes", True, "model.num_classes"),
    ("dcgan_mnist", "train.r1_gamma", -1.0, "train.r1_gamma"),
    ("wgan_gp_mnist", "train.gp_weight", float("nan"), "train.gp_weight"),
    ("wgan_gp_mnist", "train.gp_weight", -10.0, "train.gp_weight"),
    ("vae_binary_mnist", "data.binarize", None, "data.binarize"),
    ("vqgan_mnist", "model.downsample", 8, "dividing data.image_size=28"),
    ("vqgan_mnist", "model.downsample", 3, "model.downsample"),
    ("vqgan_mnist", "model.codebook_update", "kmeans", "model.codebook_update"),
    ("vqgan_mnist", "model.commitment", -0.25, "model.commitment"),
    ("vqgan_mnist", "model.codebook_decay", 1.0, "model.codebook_decay"),
    ("vqgan_mnist", "train.loss", "wasserstein", "train.loss"),
    ("vqgan_mnist", "train.reconstruction", "l3", "train.reconstruction"),
    ("vqgan_mnist", "model.perceptual", "vgg", "model.perceptual"),
    ("kl_autoencoder_mnist", "model.kl_weight", -1e-6, "model.kl_weight"),
]


def test_the_bad_config_table_is_large():
    assert len(BAD) >= 25


@pytest.mark.parametrize("name,field,value,expected", BAD)
def test_bad_value_fails_naming_the_field(name, field, value, expected):
    config = load_config(name)
    *sections, key = field.split(".")
    node = config
    for section in sections:
        node = node[section]
    with config.unlocked():
        node[key] = value
    with pytest.raises(ConfigError, match=expected) as info:
        validate(config)
    assert field in str(info.value) or expected == "known families"
    assert repr(value) in str(info.value)  # the bad value is named too


def test_missing_field_is_reported():
    config = load_config("vae_mnist")
    del config.train["lr"]
    with pytest.raises(ConfigError, match="train.lr is missing"):
        validate(config)


@pytest.mark.parametrize("arg", [None, "quick"])
def test_from_file_gives_what_the_command_line_gives(arg):
    path = os.path.join(REPO, "configs", "dcgan_mnist.py")
    flag_values = flags.FlagValues()  # the CLI's parser (main.py), on its own flags
    config_flags.DEFINE_config_file("config", None, flag_values=flag_values)
    flag_values(["genimg", f"--config={path}" + (f":{arg}" if arg else "")])
    assert from_file(path, arg).to_dict() == flag_values.config.to_dict()
    assert from_file(path, arg).train.steps == (12 if arg == "quick" else 5000)


def test_from_file_names_a_missing_file_or_get_config(tmp_path):
    with pytest.raises(ConfigError, match="nope.py does not exist"):
        from_file(str(tmp_path / "nope.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="empty.py has no get_config"):
        from_file(str(empty))
