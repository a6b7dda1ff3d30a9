"""Data preparation in genimg's own words (one line, TFDS's logging and progress bars off unless
asked, an empty folder's error alone), and `checks.check_labels`: a config whose model cannot work
with its data's labels is refused with one line naming the fix, before anything is prepared."""

import glob
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from conftest import REPO, load_config
from PIL import Image

from genimg_jax.core.errors import ConfigError
from genimg_jax.data import checks
from genimg_jax.data.builders import user_images

NOISE = ("absl", "Downloading and preparing", "dataset_info", "\x1b", "Generating", "Shuffling")


def _pngs(folder, count: int, classes: tuple[str, ...] = ()) -> str:
    """`count` real PNG files in `folder` (spread over the subfolders `classes`, if any)."""
    rng = np.random.default_rng(count)
    for i in range(count):
        sub = os.path.join(str(folder), classes[i % len(classes)] if classes else "")
        os.makedirs(sub, exist_ok=True)
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(sub, f"{i}.png"))
    return str(folder)


def _run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, stdout and stderr together (absl's warnings reach stderr
    there; under pytest they would go to its log capture and prove nothing)."""
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "unused")}
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


PREPARE = """
import json, logging
import ml_collections
from genimg_jax.data import pipeline
path, data_dir, verbose = ARGS
data = ml_collections.ConfigDict(dict(
    name="folder", path=path, data_dir=data_dir, image_size=16, channels=3,
    labels_from_folders=False, skip_bad_files=False))
logging.getLogger("absl").setLevel(logging.INFO)  # the caller's levels, restored afterwards
before = (logging.getLogger("absl").level, logging.getLogger("tensorflow_datasets").level,
          pipeline.tqdm_utils._active)
pipeline.prepare_data(data, verbose=verbose)
n = sum(len(pipeline.load_data_split(data, s)) for s in ("train", "test"))
if not verbose:
    pipeline.prepare("bundled_mnist", data_dir)
after = (logging.getLogger("absl").level, logging.getLogger("tensorflow_datasets").level,
         pipeline.tqdm_utils._active)
print("RESULT", json.dumps([n, before == after]))
"""


def _prepare(tmp_path, folder: str, data_dir: str, verbose: bool) -> tuple[list[str], list]:
    """PREPARE's lines (less its RESULT) and its RESULT."""
    code = PREPARE.replace("ARGS", repr((folder, data_dir, verbose)))
    result = _run_python(code, tmp_path)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:]
    (summary,) = [json.loads(x[len("RESULT ") :]) for x in lines if x.startswith("RESULT ")]
    return [x for x in lines if not x.startswith("RESULT ")], summary


def test_preparing_a_folder_says_one_line_of_its_own_and_nothing_of_tfds(tmp_path):
    folder = _pngs(tmp_path / "images", 12)
    data_dir = str(tmp_path / "tfds")
    lines, (count, restored) = _prepare(tmp_path, folder, data_dir, verbose=False)
    assert count == 12 and restored
    noisy = [x for x in lines if any(word in x for word in NOISE)]
    assert not noisy, lines
    assert len(lines) == 2, lines  # the folder's line and bundled_mnist's
    assert lines[0].startswith(f"preparing 12 images from {folder} (16x16x3) into {data_dir}/")
    assert lines[1] == f"preparing bundled_mnist into {data_dir}/bundled_mnist/1.0.0"
    # prepared already: nothing to say
    again, _ = _prepare(tmp_path, folder, data_dir, verbose=False)
    assert again == []
    # verbose: TFDS's own messages and progress bars come back (so the quiet above is real)
    other = _pngs(tmp_path / "other", 5)
    loud, (count, restored) = _prepare(tmp_path, other, data_dir, verbose=True)
    assert count == 5 and restored
    assert any("Downloading and preparing" in x for x in loud), loud
    assert any(x.startswith(f"preparing 5 images from {other}") for x in loud), loud


def test_an_empty_folder_says_only_its_error(tmp_path):
    (tmp_path / "empty").mkdir()
    code = (
        "import ml_collections\n"
        "from genimg_jax.data import pipeline\n"
        f"data = ml_collections.ConfigDict(dict(name='folder', path={str(tmp_path / 'empty')!r},"
        f" data_dir={str(tmp_path / 'tfds')!r}, image_size=16, channels=3,"
        " labels_from_folders=False, skip_bad_files=False))\n"
        "try:\n"
        "    pipeline.prepare_data(data)\n"
        "except pipeline.DataError as e:\n"
        "    print(e)\n"
    )
    result = _run_python(code, tmp_path)
    assert result.returncode == 0
    (line,) = result.stdout.splitlines()
    assert "holds no images" in line and "it is empty" in line


def _genimg_train_fails(tmp_path, config: str, *overrides: str) -> list[str]:
    """`genimg train` of configs/`config` with `overrides` (data prepared under tmp_path/tfds,
    workdir tmp_path/run): asserts exit status 2; returns every line it printed."""
    argv = [os.path.join(os.path.dirname(sys.executable), "genimg"), "train"]
    argv += ["--config", os.path.join(REPO, "configs", config), *overrides]
    argv += [f"--config.data.data_dir={tmp_path / 'tfds'}", "--workdir", str(tmp_path / "run")]
    result = subprocess.run(
        argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-3000:]
    return (result.stdout + result.stderr).splitlines()


def test_genimg_train_on_an_empty_folder_prints_one_line_and_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    lines = _genimg_train_fails(
        tmp_path, "folder_64.py:quick", f"--config.data.path={tmp_path / 'empty'}"
    )
    assert len(lines) == 1 and "holds no images" in lines[0], lines


def test_the_quiet_context_restores_levels_and_the_progress_bar_switch():
    import logging

    from genimg_jax.data import pipeline

    absl, tfds_logger = logging.getLogger("absl"), logging.getLogger("tensorflow_datasets")
    saved = absl.level, tfds_logger.level, pipeline.tqdm_utils._active
    try:
        absl.setLevel(logging.DEBUG)
        pipeline.tfds.enable_progress_bar()
        with pipeline.quiet_tfds():
            with pipeline.quiet_tfds():  # nested: the inner exit restores nothing yet
                pass
            assert absl.level == tfds_logger.level == logging.ERROR
            assert not pipeline.tqdm_utils._active
        assert absl.level == logging.DEBUG and pipeline.tqdm_utils._active
        with pipeline.quiet_tfds(verbose=True):
            assert absl.level == logging.DEBUG and pipeline.tqdm_utils._active
    finally:
        absl.setLevel(saved[0])
        tfds_logger.setLevel(saved[1])
        pipeline.tfds.display_progress_bar(saved[2])


# --- check_labels ----------------------------------------------------------------------------


def _check(config):
    """What training start-up asks: the family's `check_data` (a GAN's: check_labels)."""
    k = config.model.get("num_classes", 0) or 0
    return checks.check_labels(config.data, int(k))


def _config(num_classes: int | None = 10, **data) -> ml_collections.ConfigDict:
    """A config's fields check_labels reads (num_classes None: a model without the field)."""
    model = {} if num_classes is None else {"num_classes": num_classes}
    fields = {"name": "folder", "path": "", "data_dir": "", "labels_from_folders": False}
    return ml_collections.ConfigDict({"model": model, "data": {**fields, **data}})


def _one_line_error(config, *fragments: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _check(config)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_a_conditional_model_on_an_unlabelled_folder_is_refused_naming_the_fix(tmp_path):
    flat = _pngs(tmp_path / "flat", 4)
    _one_line_error(_config(10, path=flat), "model.num_classes=10", "model.num_classes=0")
    sorted_ = _pngs(tmp_path / "sorted", 6, ("a", "b", "c"))
    message = _one_line_error(
        _config(10, path=sorted_), "model.num_classes=0", "data.labels_from_folders=True"
    )
    assert "3 class subfolders" in message and "model.num_classes=3" in message
    # unconditional models take any folder; so does a VAE's config, which has no num_classes
    assert _check(_config(0, path=flat)) is None
    assert _check(_config(None, path=flat)) is None


def test_class_subfolders_must_match_num_classes(tmp_path):
    folder = _pngs(tmp_path / "images", 6, ("cats", "dogs", "owls"))
    config = _config(2, path=folder, labels_from_folders=True)
    message = _one_line_error(config, "model.num_classes=2", "3 class subfolders")
    assert "'cats', 'dogs', 'owls'" in message and "model.num_classes=3" in message
    assert _check(_config(3, path=folder, labels_from_folders=True)) is None
    # labels only for the classifier of the scores: an unconditional model is fine
    assert _check(_config(0, path=folder, labels_from_folders=True)) is None
    flat = _pngs(tmp_path / "flat", 3)
    _one_line_error(_config(3, path=flat, labels_from_folders=True), "no subfolder holding images")


def test_the_issues_command_is_refused_before_anything_is_prepared(tmp_path):
    """genimg train --config configs/dcgan_mnist.py --config.data.name=folder
    --config.data.path=DIR: the class-conditional config on an unlabelled folder."""
    config = load_config("dcgan_mnist", None)
    assert config.model.num_classes == 10
    config.data.name = "folder"
    config.data.path = _pngs(tmp_path / "images", 4)
    config.data.data_dir = str(tmp_path / "tfds")
    _one_line_error(config, "model.num_classes=10 needs labelled data", "model.num_classes=0")
    assert not os.path.exists(config.data.data_dir)  # nothing prepared


def test_class_folders_follows_the_builders_rule(tmp_path):
    root = tmp_path / "images"
    _pngs(root, 4, ("b", "a"))
    _pngs(root / "deep" / "er", 1)  # images only below a second level: still a class
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "x.txt").write_text("not an image")
    (root / "loose.png").write_bytes((root / "a" / "1.png").read_bytes())  # not a class
    os.symlink(root / "a", root / "linked")  # os.walk does not follow links: not a class
    files, _ = user_images.list_images(str(root))
    assert checks.class_folders(str(root)) == user_images.class_names(files) == ["a", "b", "deep"]


def test_arrays_need_labels_in_range(tmp_path):
    images = np.zeros((6, 8, 8), np.uint8)
    np.save(tmp_path / "x.npy", images)
    _one_line_error(_config(3, name="arrays", path=str(tmp_path / "x.npy")), ".npy", "=0")
    np.savez(tmp_path / "plain.npz", images=images)
    _one_line_error(
        _config(3, name="arrays", path=str(tmp_path / "plain.npz")),
        "model.num_classes=0",
        "'labels'",
    )
    np.savez(tmp_path / "y.npz", images=images, y=np.arange(6) % 3)
    assert _check(_config(3, name="arrays", path=str(tmp_path / "y.npz"))) is None
    assert _check(_config(5, name="arrays", path=str(tmp_path / "y.npz"))) is None
    _one_line_error(
        _config(2, name="arrays", path=str(tmp_path / "y.npz")), "run from 0 to 2", "=3"
    )
    assert _check(_config(0, name="arrays", path=str(tmp_path / "x.npy"))) is None


def test_tfds_data_sets_by_their_label_feature(tmp_path):
    import tensorflow_datasets as tfds

    import genimg_jax.data.builders  # noqa: F401  registers bundled_mnist and shapes

    for name, classes in checks.TFDS_CLASSES.items():  # the table against TFDS's own features
        features = tfds.builder(name, data_dir=str(tmp_path)).info.features
        assert ("label" in features and features["label"].num_classes) == (classes or False), name
    _one_line_error(_config(10, name="shapes"), "'shapes' has no 'label'", "model.num_classes=0")
    _one_line_error(_config(4, name="cifar10"), "has 10 classes", "model.num_classes=10")
    assert _check(_config(10, name="bundled_mnist")) is None
    assert _check(_config(10, name="some_other_tfds_set")) is None
    assert not glob.glob(str(tmp_path / "*" / "*" / "*.array_record*"))  # nothing prepared


def test_every_shipped_config_passes():
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        name = os.path.basename(path)[:-3]
        for arg in (None, "quick"):
            config = load_config(name, arg)
            if config.data.name in user_images.KINDS:
                config.data.path = ""  # templates: the user gives the path
            _check(config)


@pytest.mark.parametrize("labelled", [False, True])
def test_the_conditional_main_job_on_a_folder_whose_labels_cannot_serve_it_stops_first(
    tmp_path, labelled
):
    """`genimg train --config configs/dcgan_mnist.py` (10 classes) on an unlabelled folder, or
    with labels_from_folders and 2 class folders: one line, exit 2, nothing prepared or built."""
    folder = tmp_path / "images"
    for sub in ("cats", "dogs"):
        (folder / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / sub / f"{i}.png")
    lines = _genimg_train_fails(
        tmp_path,
        "dcgan_mnist.py:quick",
        "--config.data.name=folder",
        f"--config.data.path={folder}",
        f"--config.data.labels_from_folders={labelled}",
    )
    assert len(lines) == 1 and "model.num_classes=10" in lines[0], lines
    assert ("2 class subfolders" in lines[0]) if labelled else ("model.num_classes=0" in lines[0])
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "run").exists()
