"""Checks of a config against its data, made before anything is prepared or built: each refuses a
config that cannot work with a one-line ConfigError naming the fix (exit 2 in the CLI).

`check_labels`: a class-conditional model (`model.num_classes` = K > 0) needs a label per image,
with labels in [0, K). It reads only what is cheap: a folder's first-level entries (and, for
each subfolder, the first image in it), an .npz's list of arrays and its labels, and a table of
the labels of the TFDS data sets genimg names (tests check the table against TFDS).
"""

import os
import zipfile

import ml_collections
import numpy as np

from genimg_jax.core.errors import ConfigError
from genimg_jax.data.images import EXTENSIONS

# The number of classes of the 'label' feature of the TFDS data sets genimg names (None: they
# have no 'label' feature); other names are not checked.
TFDS_CLASSES: dict[str, int | None] = {
    "bundled_mnist": 10,
    "shapes": None,  # factor labels (label_shape, ...) but no 'label'
    "mnist": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
    "celeb_a": None,  # attributes, landmarks and identity but no 'label'
}
ARRAY_LABELS = ("labels", "y")  # the arrays of an .npz that user_images reads as labels
SHOWN = 5  # class folders named in a message


def has_labels(data: ml_collections.ConfigDict) -> bool:
    """Whether the images of `data` come with class labels, read as cheaply as `check_labels`
    reads them (a TFDS name outside the table: assumed labelled)."""
    if data.name == "folder":
        return bool(data.get("labels_from_folders", False))
    if data.name == "arrays":
        path = _path(data)
        if not (path.endswith(".npz") and os.path.isfile(path)):
            return False
        with np.load(path) as f:
            return any(key in f.files for key in ARRAY_LABELS)
    return TFDS_CLASSES.get(data.name, 0) is not None


def class_folders(path: str) -> list[str]:
    """The class names `data.labels_from_folders=True` gives the folder `path`: its first-level
    subfolders (not links) holding at least one image at any depth, sorted (the builder's rule,
    `user_images.class_names`); each is read only down to its first image."""
    with os.scandir(path) as entries:
        subfolders = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    return sorted(name for name in subfolders if _holds_an_image(os.path.join(path, name)))


def _holds_an_image(folder: str) -> bool:
    for _, dirs, files in os.walk(folder):
        if any(f.lower().endswith(EXTENSIONS) for f in files):
            return True
        dirs.sort()
    return False


def check_labels(data: ml_collections.ConfigDict, k: int) -> None:
    """Raises a one-line ConfigError when a model of `k` classes (a family's `model.num_classes`)
    cannot work with the data `data` (a config's `data` section):

    - a conditional model (num_classes K > 0) on data without labels: a folder with
      data.labels_from_folders=False, a .npy or an .npz without 'labels'/'y', or a TFDS data
      set without a 'label' feature (TFDS_CLASSES);
    - K > 0 and a different number of classes: the folder's class subfolders under
      data.labels_from_folders=True, a known TFDS data set's classes, or an .npz's labels
      outside [0, K).

    An unconditional model (K = 0) takes any data; a missing or unreadable data.path is left
    to the preparation, which names it. Nothing is prepared or built.
    """
    if k <= 0:
        return
    if data.name == "folder":
        _check_folder(data, k)
    elif data.name == "arrays":
        _check_arrays(data, k)
    elif data.name in TFDS_CLASSES:
        _check_tfds(data.name, k)


def _path(data: ml_collections.ConfigDict) -> str:
    return os.path.abspath(os.path.expanduser(data.path)) if data.get("path") else ""


def _check_folder(data: ml_collections.ConfigDict, k: int) -> None:
    path = _path(data)
    if not os.path.isdir(path):
        return
    classes = class_folders(path)
    n, named = len(classes), _names(classes)
    if not data.get("labels_from_folders", False):
        fix = (
            (
                f"data.labels_from_folders=True with the folder's {n} class subfolders ({named})"
                + ("" if n == k else f" and model.num_classes={n}")
            )
            if n
            else "sort the images into one subfolder per class and set "
            "data.labels_from_folders=True with model.num_classes=<their number>"
        )
        raise ConfigError(
            f"model.num_classes={k} needs labelled data, but data.name='folder' "
            f"(data.path={path!r}) has no labels (data.labels_from_folders=False): "
            f"set model.num_classes=0, or {fix}"
        )
    if n == 0:
        raise ConfigError(
            f"data.labels_from_folders=True takes the classes from the subfolders of "
            f"data.path={path!r}, and it has no subfolder holding images: sort the images into "
            f"one subfolder per class, or set data.labels_from_folders=False and "
            f"model.num_classes=0"
        )
    if n != k:
        raise ConfigError(
            f"model.num_classes={k}, but data.path={path!r} has {n} class subfolders ({named}) "
            f"under data.labels_from_folders=True: set model.num_classes={n} (or 0 for an "
            f"unconditional model), or give the folder {k} class subfolders"
        )


def _names(classes: list[str]) -> str:
    shown = ", ".join(repr(c) for c in classes[:SHOWN])
    return shown + (f", ... {len(classes) - SHOWN} more" if len(classes) > SHOWN else "")


def _check_arrays(data: ml_collections.ConfigDict, k: int) -> None:
    path = _path(data)
    if not os.path.isfile(path):
        return
    if path.endswith(".npy"):
        raise ConfigError(
            f"model.num_classes={k} needs labelled data, but data.path={path!r} is a .npy of "
            f"images only: set model.num_classes=0, or save images and labels together, "
            f"np.savez('x.npz', images=images, labels=labels), with labels in 0..{k - 1}"
        )
    if not path.endswith(".npz"):
        return
    try:
        with np.load(path) as f:  # reads the archive's list, then the labels only
            key = next((a for a in ARRAY_LABELS if a in f.files), None)
            labels = None if key is None else np.asarray(f[key]).reshape(-1)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return  # the preparation says what is wrong with the file
    if labels is None:
        raise ConfigError(
            f"model.num_classes={k} needs labelled data, but data.path={path!r} has no array "
            f"{' or '.join(repr(a) for a in ARRAY_LABELS)}: set model.num_classes=0, or add the "
            f"labels (ints in 0..{k - 1}) to the .npz as 'labels'"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.number):
        return  # the preparation says so
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        lo, hi = int(labels.min()), int(labels.max())
        fix = (
            f"set model.num_classes={hi + 1} (or 0 for an unconditional model)"
            if lo >= 0
            else "number the classes from 0"
        )
        raise ConfigError(
            f"model.num_classes={k}, but the labels {key!r} of data.path={path!r} run from "
            f"{lo} to {hi}, and a conditional model takes labels in 0..{k - 1}: {fix}"
        )


def _check_tfds(name: str, k: int) -> None:
    classes = TFDS_CLASSES[name]
    if classes is None:
        labelled = [n for n, c in TFDS_CLASSES.items() if c]
        raise ConfigError(
            f"model.num_classes={k} needs labelled data, but data set {name!r} has no 'label' "
            f"feature: set model.num_classes=0, or use a labelled data set "
            f"({', '.join(labelled)}) or your own images in class subfolders "
            f"(data.name='folder', data.labels_from_folders=True)"
        )
    if classes != k:
        raise ConfigError(
            f"model.num_classes={k}, but data set {name!r} has {classes} classes: set "
            f"model.num_classes={classes} (or 0 for an unconditional model)"
        )
