"""Sweeps as data: combinators, stable numbering and names, applying overrides, loading a config
file's sweep, and telling a finished member."""

import json
import os

import pytest

from genimg_jax.config import base_config, from_file
from genimg_jax.core.errors import ConfigError
from genimg_jax.sweeps import spec as sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(name: str) -> str:
    return os.path.join(REPO, "configs", name)


def test_product_varies_the_last_axis_fastest():
    s = sweep.product(sweep.axis("a", [1, 2]), sweep.axis("b", ["x", "y", "z"]))
    assert s == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]


def test_zipped_pairs_members_and_chain_concatenates():
    z = sweep.zipped(sweep.axis("train.g_lr", [1e-4, 2e-4]), sweep.axis("train.d_lr", [4e-4, 8e-4]))
    assert z == [
        {"train.g_lr": 1e-4, "train.d_lr": 4e-4},
        {"train.g_lr": 2e-4, "train.d_lr": 8e-4},
    ]
    c = sweep.chain(sweep.axis("seed", [0]), sweep.axis("model.beta", [2.0]))
    assert c == [{"seed": 0}, {"model.beta": 2.0}]


def test_combinators_reject_mistakes_naming_the_field():
    with pytest.raises(ConfigError, match="lengths"):
        sweep.zipped(sweep.axis("a", [1, 2]), sweep.axis("b", [1]))
    with pytest.raises(ConfigError, match="seed"):
        sweep.product(sweep.axis("seed", [0, 1]), sweep.axis("seed", [2]))
    with pytest.raises(ConfigError, match="train.lr"):
        sweep.axis("train.lr", [])
    with pytest.raises(ConfigError, match="train.lr"):
        sweep.axis("train.lr", [[1e-3]])


def test_member_names_of_a_product_and_zipped_sweep_are_stable():
    s = sweep.product(
        sweep.zipped(sweep.axis("model.beta", [0.5, 4.0]), sweep.axis("train.lr", [3e-4, 1e-3])),
        sweep.axis("seed", [0, 1]),
    )
    assert [m.name for m in sweep.members(s)] == [
        "000_beta=0.5_lr=0.0003_seed=0",
        "001_beta=0.5_lr=0.0003_seed=1",
        "002_beta=4_lr=0.001_seed=0",
        "003_beta=4_lr=0.001_seed=1",
    ]
    assert [m.index for m in sweep.members(s)] == [0, 1, 2, 3]
    assert sweep.members(s)[2].overrides == {"model.beta": 4.0, "train.lr": 1e-3, "seed": 0}


@pytest.mark.parametrize(
    "value, text",
    [(4.0, "4"), (0.5, "0.5"), (3e-4, "0.0003"), (1e-5, "1e-05"), (7, "7"), (True, "True")],
)
def test_values_are_spelled_compactly(value, text):
    assert sweep.format_value(value) == text


def test_names_are_filesystem_safe():
    name = sweep.member_name(12, {"data.name": "a/b c:d_e", "train.lr": -1e-3})
    assert name == "012_name=a-b-c-d-e_lr=-0.001"


def test_quick_beta_sweep_members_are_golden():
    _, found = sweep.load(config_path("beta_vae_shapes.py") + ":quick")
    assert found == [
        sweep.Member(0, {"model.beta": 1.0, "seed": 0}, "000_beta=1_seed=0"),
        sweep.Member(1, {"model.beta": 1.0, "seed": 1}, "001_beta=1_seed=1"),
        sweep.Member(2, {"model.beta": 4.0, "seed": 0}, "002_beta=4_seed=0"),
        sweep.Member(3, {"model.beta": 4.0, "seed": 1}, "003_beta=4_seed=1"),
    ]


def test_full_beta_sweep_has_30_members_in_product_order():
    base, found = sweep.load(config_path("beta_vae_shapes.py"))
    assert base.data.name == "shapes"
    assert len(found) == 30
    assert len({m.name for m in found}) == 30
    assert found[0].name == "000_beta=0.5_lr=0.0003_seed=0"
    assert found[5].name == "005_beta=0.5_lr=0.001_seed=2"
    assert found[29].name == "029_beta=8_lr=0.001_seed=2"
    betas = [m.overrides["model.beta"] for m in found]
    assert sorted(set(betas)) == [0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize("arg, count", [("", 6), (":quick", 2)])
def test_vae_mnist_lr_sweep_sizes(arg, count):
    _, found = sweep.load(config_path("vae_mnist.py") + arg)
    assert len(found) == count
    assert all(set(m.overrides) == {"train.lr", "seed"} for m in found)


def test_vae_mnist_quick_sweep_members():
    _, found = sweep.load(config_path("vae_mnist.py:quick"))
    assert [m.name for m in found] == ["000_lr=0.001_seed=0", "001_lr=0.003_seed=0"]


def test_load_without_get_sweep_says_to_define_it():
    with pytest.raises(ConfigError, match="get_sweep"):
        sweep.load(config_path("dcgan_mnist.py"))


def test_load_rejects_a_member_that_fails_validation(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        "from genimg_jax.config import base_config\n"
        "from genimg_jax.sweeps.spec import axis\n"
        "def get_config(arg=None):\n    return base_config('conv_vae')\n"
        "def get_sweep(arg=None):\n    return axis('train.lr', [1e-3, -1.0])\n"
    )
    with pytest.raises(ConfigError, match=r"001_lr=-1.*train\.lr"):
        sweep.load(str(path))


def test_load_of_a_missing_file_names_it():
    with pytest.raises(ConfigError, match="nope.py"):
        sweep.load("configs/nope.py:quick")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("configs/x.py", ("configs/x.py", None)),
        ("configs/x.py:quick", ("configs/x.py", "quick")),
        ("/abs/dir/x.py:a,b", ("/abs/dir/x.py", "a,b")),
    ],
)
def test_split_config_arg(text, expected):
    assert sweep.split_config_arg(text) == expected


def test_apply_sets_nested_fields_and_leaves_the_base_alone():
    base = base_config("conv_vae")
    base.lock()
    out = sweep.apply(base, {"model.beta": 4, "train.lr": 3e-4, "seed": 2})
    assert (out.model.beta, out.train.lr, out.seed) == (4.0, 3e-4, 2)
    assert isinstance(out.model.beta, float)  # an int goes into a float field as a float
    assert (base.model.beta, base.train.lr, base.seed) == (1.0, 1e-3, 0)


@pytest.mark.parametrize("field", ["model.bta", "trian.lr", "seed.value", "model"])
def test_apply_rejects_unknown_fields_naming_them(field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        sweep.apply(base_config("conv_vae"), {field: 1.0})


@pytest.mark.parametrize(
    "field, value",
    [("seed", 1.5), ("seed", True), ("train.lr", "fast"), ("train.reconstruction", 1)],
)
def test_apply_rejects_values_of_the_wrong_type_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        sweep.apply(base_config("conv_vae"), {field: value})


def test_member_dir_is_the_name_inside_the_sweep_workdir(tmp_path):
    member = sweep.members(sweep.axis("seed", [0, 1]))[1]
    assert sweep.member_dir(str(tmp_path), member) == os.path.join(str(tmp_path), "001_seed=1")


def test_is_finished_needs_a_summary_at_the_last_step(tmp_path):
    d = str(tmp_path)
    assert not sweep.is_finished(d, 12)
    (tmp_path / "summary.json").write_text(json.dumps({"step": 8, "metrics": {}}))
    assert not sweep.is_finished(d, 12)
    (tmp_path / "summary.json").write_text(json.dumps({"step": 12, "metrics": {}}))
    assert sweep.is_finished(d, 12)
    (tmp_path / "summary.json").write_text('{"step": 1')  # cut short by a kill
    assert not sweep.is_finished(d, 12)


def test_manifest_round_trips(tmp_path):
    found = sweep.members(sweep.product(sweep.axis("model.beta", [1.0]), sweep.axis("seed", [3])))
    path = sweep.write_manifest(str(tmp_path), "configs/x.py:quick", found)
    with open(path) as f:
        assert json.load(f)["config"] == "configs/x.py:quick"
    assert sweep.read_manifest(str(tmp_path)) == found
    assert sweep.read_manifest(str(tmp_path / "elsewhere")) is None


def test_the_shipped_unconditional_config_is_the_diversity_searchs_msgan_member():
    base, found = sweep.load(config_path("dcgan_mnist_uncond.py:diversity"))
    assert found[0].overrides == {} and len({m.name for m in found}) == len(found) == 8
    (member,) = [m for m in found if m.overrides == {"train.mode_seeking": 0.05}]
    shipped = from_file(config_path("dcgan_mnist_uncond.py")).to_dict()
    member = sweep.apply(base, member.overrides).to_dict()
    assert shipped["eval"].pop("every") == 2500 and member["eval"].pop("every") == 1000
    assert shipped == member


def test_the_unconditional_search_validates_every_member_at_half_the_steps():
    base, found = sweep.load(config_path("dcgan_mnist_uncond.py:search"))
    assert base.train.steps == 2500 and base.model.num_classes == 0
    assert found[0].overrides == {} and len({m.name for m in found}) == len(found)
