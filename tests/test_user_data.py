"""Your own images (data.name "folder" or "arrays"): every format and mode decoded against an
independent reference, EXIF orientation applied, labels from subfolders, a deterministic split,
prepared once and again when the folder changes (nothing left in /tmp), bad files named or
skipped and listed, clear errors for empty folders, arrays in .npz/.npy, and a CLI run on a
folder."""

import hashlib
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from PIL import Image

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.cli.main import main as cli
from genimg_jax.core.errors import ConfigError
from genimg_jax.data import pipeline
from genimg_jax.data.builders import user_images
from genimg_jax.runtime import parallel
from genimg_jax.training.checkpoint import Checkpoints

SIZE = 16


def _gradient(h: int, w: int, c: int) -> np.ndarray:
    """A smooth uint8 image [h, w, c] (so lossy formats stay close)."""
    y, x = np.mgrid[0:h, 0:w]
    channels = [(x * 255 // max(w - 1, 1) + 40 * k) % 256 for k in range(c)]
    channels[0] = y * 255 // max(h - 1, 1)
    return np.stack(channels, -1).astype(np.uint8)


def _reference(image: np.ndarray) -> np.ndarray:
    """Centre square crop, then box resize to SIZE, in plain NumPy (SIZE divides the side)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side].astype(np.float64)
    f = side // SIZE
    return square.reshape(SIZE, f, SIZE, f, -1).mean((1, 3))


@pytest.fixture
def folder(tmp_path):
    """Images of every kind in two class folders, plus a file that is not an image."""
    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    rgb = _gradient(48, 32, 3)
    Image.fromarray(rgb[..., 0]).save(root / "cats" / "grey.png")  # L
    Image.fromarray(rgb).save(root / "cats" / "photo.jpg", quality=95, subsampling=0)
    Image.fromarray(rgb).save(root / "cats" / "lossless.webp", lossless=True)
    Image.fromarray(rgb).save(root / "cats" / "bitmap.bmp")
    Image.fromarray(rgb).convert("P").save(root / "cats" / "palette.gif")
    rgba = np.concatenate([rgb, np.full((48, 32, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba).save(root / "dogs" / "alpha.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "dogs" / "deep.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "dogs" / "cmyk.jpg", quality=95, subsampling=0)
    # stored turned 90 degrees counter-clockwise, EXIF says: turn 90 degrees clockwise to show
    rotated = Image.fromarray(np.rot90(rgb).copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(root / "dogs" / "rotated.png", exif=exif.tobytes())
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root, rgb


def _data(path, name="folder", channels=3, **fields):
    config = config_lib.base_config("dcgan")
    data = config.data
    data.name, data.path, data.image_size, data.channels = name, str(path), SIZE, channels
    data.data_dir = str(path) + "_tfds"
    for key, value in fields.items():
        data[key] = value
    return data


def _all(data) -> dict[str, dict]:
    """{split: {"image", "label"?}} of the prepared data."""
    out = {}
    for split in ("train", "test"):
        source = pipeline.load_data_split(data, split)
        out[split] = source.get(np.arange(len(source)))
    return out


def _match(prepared: dict, expected: list[tuple[str, np.ndarray, int, float]]) -> None:
    """Every prepared (image, label) is within its tolerance of an expected one with that label,
    and every expected one is matched (TFDS stores a split's examples in its own order)."""
    matched = set()
    for image, label in zip(
        prepared["image"], prepared.get("label", [None] * len(prepared["image"]))
    ):
        errors = [
            (np.abs(image - want).max() / tol, name)
            for name, want, want_label, tol in expected
            if label is None or label == want_label
        ]
        error, name = min(errors)
        assert error <= 1, (name, error)
        matched.add(name)
    assert len(prepared["image"]) == len(expected)


def test_every_format_and_mode_is_decoded_fitted_and_labelled_from_its_folder(folder):
    root, rgb = folder
    data = _data(root, labels_from_folders=True)
    files, other = user_images.list_images(str(root))
    assert len(files) == 9 and other == 1  # notes.txt ignored
    splits = _all(data)
    expected_split = user_images.split_of(files)  # every file readable: the keys are the files
    reference = _reference(rgb)
    tolerances = {"photo.jpg": 12, "cmyk.jpg": 12, "palette.gif": 40}
    for split, rows in expected_split.items():
        expected = []
        for i in rows:
            name = files[i]
            want = reference
            if "grey" in name or "deep" in name:  # one channel, tiled to RGB
                want = np.repeat(reference[..., :1], 3, -1)
            label = 0 if name.startswith("cats") else 1  # sorted folder names
            expected.append((name, want, label, tolerances.get(name[5:], 1.01)))
        assert splits[split]["image"].shape[1:] == (SIZE, SIZE, 3)
        _match(splits[split], expected)


def test_the_split_is_by_a_hash_of_each_path_and_keeps_a_test_image():
    keys = [f"img{i:03d}.png" for i in range(100)]
    split = user_images.split_of(keys)
    by_hash = [
        i for i, k in enumerate(keys) if int(hashlib.sha256(k.encode()).hexdigest(), 16) % 10 == 0
    ]
    assert split["test"] == by_hash and 3 < len(by_hash) < 20
    assert sorted(split["train"] + split["test"]) == list(range(100))
    assert split_of_more_keeps_old(keys)
    assert len(user_images.split_of(["a.png", "b.png"])["test"]) == 1


def split_of_more_keeps_old(keys: list[str]) -> bool:
    """Adding images leaves every earlier image in its split."""
    before = user_images.split_of(keys)
    after = user_images.split_of(keys + ["new1.png", "new2.png"])
    return set(before["test"]) <= set(after["test"]) and set(before["train"]) <= set(after["train"])


def test_prepared_once_and_again_when_the_folder_changes_leaving_nothing_in_tmp(
    folder, tmp_path, monkeypatch
):
    root, rgb = folder
    data = _data(root)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where mkdtemp writes
    (tmp_path / "tmp").mkdir()
    first = pipeline.prepare_data(data)
    assert pipeline.prepare_data(data).data_dir == first.data_dir  # reused
    Image.fromarray(rgb).save(root / "cats" / "new.png")
    second = pipeline.prepare_data(data)
    assert second.data_dir != first.data_dir
    assert sum(len(pipeline.load_data_split(data, s)) for s in ("train", "test")) == 10
    data.image_size = 32  # another geometry is another prepared set
    assert pipeline.prepare_data(data).data_dir not in (first.data_dir, second.data_dir)
    assert not os.listdir(tmp_path / "tmp")  # TFDS's empty GCS-info directories included


def test_a_bad_file_is_named_or_skipped_and_listed(folder):
    root, _ = folder
    whole = (root / "cats" / "photo.jpg").read_bytes()
    (root / "cats" / "broken.jpg").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(
        pipeline.DataError, match=r"cats/broken\.jpg cannot be read.*skip_bad_files"
    ):
        pipeline.prepare_data(_data(root))
    data = _data(root, skip_bad_files=True)
    builder = pipeline.prepare_data(data)
    assert sum(len(pipeline.load_data_split(data, s)) for s in ("train", "test")) == 9
    with open(os.path.join(os.path.dirname(builder.data_dir), user_images.BAD_FILES)) as f:
        listed = f.read()
    assert "broken.jpg" in listed and listed.count("\n") == 1


def test_empty_folders_and_folders_without_images_say_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(pipeline.DataError, match="holds no images.*it is empty"):
        pipeline.prepare_data(_data(tmp_path / "empty"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(pipeline.DataError, match="holds no images.*1 other files were ignored"):
        pipeline.prepare_data(_data(tmp_path / "text"))
    with pytest.raises(pipeline.DataError, match="is not a folder"):
        pipeline.prepare_data(_data(tmp_path / "missing"))
    config = config_lib.base_config("dcgan")
    config.data.name = "folder"
    with pytest.raises(ConfigError, match="data.path=''"):
        config_lib.validate(config)


def test_arrays_in_npz_with_labels_and_npy_floats(tmp_path):
    images = np.stack([_gradient(32, 32, 3) // (i + 1) for i in range(12)])
    labels = np.arange(12) % 3
    np.savez(tmp_path / "x.npz", images=images, labels=labels)
    splits = _all(_data(tmp_path / "x.npz", name="arrays"))
    keys = [f"{i:09d}" for i in range(12)]
    for split, rows in user_images.split_of(keys).items():
        expected = [(str(i), _reference(images[i]), labels[i], 1.01) for i in rows]
        _match(splits[split], expected)
    floats = images[..., 0].astype(np.float32) / 255  # [N, H, W] in [0, 1]
    np.save(tmp_path / "g.npy", floats)
    grey = _all(_data(tmp_path / "g.npy", name="arrays", channels=1))
    assert grey["train"]["image"].shape[1:] == (SIZE, SIZE, 1) and "label" not in grey["train"]
    with pytest.raises(pipeline.DataError, match=r"shape \(5,\)"):
        np.save(tmp_path / "bad.npy", np.zeros(5))
        pipeline.prepare_data(_data(tmp_path / "bad.npy", name="arrays"))


def test_the_folder_templates_and_the_celeba_config_validate(tmp_path):
    weights = tmp_path / "inception.npz"
    weights.write_bytes(b"")  # validation checks that the file exists; nothing loads it here
    for name in ("folder_64", "stylegan2_folder64", "dcgan_celeba64"):
        for arg in (None, "quick"):
            config = load_config(name, arg)
            config.data.path = str(tmp_path)
            config.eval.inception_weights = str(weights)
            config_lib.validate(config)


def test_cli_trains_on_a_folder_and_resumes_bitwise(folder, tmp_path, monkeypatch):
    """End to end from the CLI; a run stopped after its step-6 checkpoint and resumed ends
    bitwise where an uninterrupted one does, and neither decodes the folder again."""
    root, _ = folder
    argv = ["genimg", "train", "--config", os.path.join(REPO, "configs", "folder_64.py:quick")]
    argv += [f"--config.data.path={root}", f"--config.data.data_dir={tmp_path / 'tfds'}"]
    argv += ["--config.train.batch_size=4", "--config.parallel.num_devices=1"]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert cli([*argv, "--workdir", whole]) == 0
    assert os.path.exists(os.path.join(whole, "samples", "samples_000012.png"))

    def no_decoding(*args):
        raise AssertionError("the prepared copy should have been reused")

    monkeypatch.setattr(user_images.images_lib, "decode", no_decoding)
    assert cli([*argv, "--workdir", parts]) == 0
    shutil.rmtree(os.path.join(parts, "checkpoints", "12"))
    assert cli(["genimg", "train", "--workdir", parts]) == 0  # resumes at 6 from config.json
    config = config_lib.load_saved(os.path.join(parts, "config.json"))
    template = families.initial_state(config, parallel.make_mesh(1))
    a = Checkpoints(whole, 3).restore(template)
    b = Checkpoints(parts, 3).restore(template)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
