"""`user_images`: a user's own images, prepared once, offline, through the same TFDS path as the
bundled data (array_record files read by `tfds.data_source`).

Two kinds of source (`data.name`):
- "folder": every PNG, JPEG, WebP, BMP or GIF (first frame) under `data.path`, in any mode and
  size, EXIF orientation applied; other files are ignored. With `data.labels_from_folders`, the
  first-level subfolder names (sorted) become the class labels.
- "arrays": a `.npz` (the array `images`, else the first one; labels from `labels` or `y`) or a
  `.npy` of images [N, H, W, C] or [N, H, W], uint8, or floats in [0, 1] (or [-1, 1]).

Images are decoded in parallel threads (PIL releases the GIL while decoding and resizing; a
progress bar on a terminal, or always with `UserImages.progress = True`),
centre-cropped and resized to `data.image_size` x `data.channels` (`images.fit_images`) and written
once. The builder config's name is a hash of the source's content (relative paths, sizes and
modification times of the files) and of the geometry and options, so a second run reuses the
prepared data and a changed folder is prepared again. The split is deterministic: an image goes
to `test` when a hash of its relative path (or of its index, for arrays) says so, about one in
TEST_EVERY, at least one; the rest to `train`. Adding images leaves the others in their split.
"""

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from concurrent import futures

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from genimg_jax.core.fields import USER_DATA
from genimg_jax.data import images as images_lib
from genimg_jax.data.builders.local_info import LocalDatasetInfo

KINDS = USER_DATA
TEST_EVERY = 10  # about one image in ten goes to the test split
BAD_FILES = "bad_files.txt"  # beside the prepared data: the files data.skip_bad_files skipped


@dataclasses.dataclass(frozen=True)
class Source:
    """What to prepare: the data config's fields that decide the prepared examples."""

    kind: str  # "folder" | "arrays"
    path: str
    image_size: int
    channels: int
    labels_from_folders: bool = False
    skip_bad_files: bool = False


def list_images(folder: str) -> tuple[list[str], int]:
    """(relative paths of the images under `folder`, sorted; how many other files were seen)."""
    found, other = [], 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if name.lower().endswith(images_lib.EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name), folder))
            else:
                other += 1
    return sorted(found), other


def signature(source: Source, files: list[str] | None = None) -> str:
    """A name for the prepared data: a hash of the source's content and of the geometry
    (`files`: the folder's `list_images`, where the caller has it already)."""
    digest = hashlib.sha256(repr(dataclasses.astuple(source)).encode())
    if source.kind == "folder":
        for rel in list_images(source.path)[0] if files is None else files:
            stat = os.stat(os.path.join(source.path, rel))
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        stat = os.stat(source.path)
        digest.update(f"{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return "s" + digest.hexdigest()[:20]


def check_source(source: Source) -> list[str]:
    """A one-line ImageError when `source` cannot be prepared at all (a missing folder, a folder
    without images, a path that is not a .npz/.npy file); nothing is decoded. Returns a folder's
    `list_images` (none for arrays)."""
    if source.kind == "folder":
        if not os.path.isdir(source.path):
            raise images_lib.ImageError(
                f"data.path={source.path!r} is not a folder; give the folder of your images"
            )
        files, other = list_images(source.path)
        if not files:
            raise images_lib.ImageError(
                f"data.path={source.path!r} holds no images ({', '.join(images_lib.EXTENSIONS)})"
                + (f"; {other} other files were ignored" if other else ": it is empty")
            )
        return files
    if not os.path.isfile(source.path) or not source.path.endswith((".npz", ".npy")):
        raise images_lib.ImageError(
            f"data.path={source.path!r} is not a .npz or .npy file of images [N, H, W, C]"
        )
    return []


def _is_test(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % TEST_EVERY == 0


def split_of(keys: list[str]) -> dict[str, list[int]]:
    """Indices of `keys` in each split: `test` by hash (at least one), `train` the rest."""
    test = [i for i, k in enumerate(keys) if _is_test(k)] or [
        min(range(len(keys)), key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
    ]
    chosen = set(test)
    return {"train": [i for i in range(len(keys)) if i not in chosen], "test": test}


def class_names(files: list[str]) -> list[str]:
    """The first-level subfolders holding the images `files`, sorted: label i is the i-th."""
    return sorted({f.split(os.sep)[0] for f in files if os.sep in f})


class UserImagesConfig(tfds.core.BuilderConfig):
    """One prepared source; its name is `signature(source)`."""

    def __init__(self, source: Source):
        files = list_images(source.path)[0] if source.kind == "folder" else []
        super().__init__(name=signature(source, files), description=f"{source.kind} {source.path}")
        self.source = source
        self.names = class_names(files) if source.labels_from_folders else []
        self.num_images = len(files)  # of a folder (0 for arrays, whose count needs a read)


class UserImages(tfds.core.GeneratorBasedBuilder):
    """A user's folder of images or array file (see the module doc); built without network."""

    VERSION = tfds.core.Version("1.0.0")
    # the decoding progress bar: None on a terminal only, True always, False never
    progress: bool | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        source = self.builder_config.source
        shape = (source.image_size, source.image_size, source.channels)
        features = {
            "image": tfds.features.Tensor(
                shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
            )
        }
        if self.builder_config.names or source.kind == "arrays" and _array_labels(source.path):
            features["label"] = tfds.features.Tensor(shape=(), dtype=np.int64)
        return LocalDatasetInfo(
            builder=self,
            description=f"Images of {source.path}, fitted to {shape}.",
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager
        source = self.builder_config.source
        if source.kind == "folder":
            keys, pixels, labels, bad = _decode_folder(
                source, self.builder_config.names, self.progress
            )
        else:
            keys, pixels, labels, bad = _load_arrays(source)
        self.bad_files = bad  # written beside the prepared data by `write_bad_files`
        return {
            split: self._generate_examples(keys, pixels, labels, rows)
            for split, rows in split_of(keys).items()
        }

    def _generate_examples(self, keys, pixels, labels, rows) -> Iterator[tuple[str, dict]]:
        for i in rows:
            example = {"image": pixels[i]}
            if labels is not None:
                example["label"] = int(labels[i])
            yield keys[i], example


def write_bad_files(builder: UserImages) -> None:
    """Lists the files data.skip_bad_files skipped (path, tab, why) in `BAD_FILES` beside the
    data the builder just prepared."""
    bad = getattr(builder, "bad_files", [])
    if bad:
        with open(os.path.join(os.path.dirname(builder.data_dir), BAD_FILES), "w") as f:
            f.write("".join(f"{path}\t{why}\n" for path, why in bad))


def _decode_one(source: Source, rel: str) -> np.ndarray | str:
    """The fitted image of file `rel`, or why it cannot be read."""
    try:
        image = images_lib.decode(os.path.join(source.path, rel), source.channels)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for damaged files
        return f"{type(e).__name__}: {str(e)[:200]}"
    return images_lib.fit_images(image[None], source.image_size, source.channels)[0]


def _decode_folder(source: Source, names: list[str], progress: bool | None = None):
    """Every image of the folder decoded and fitted, in parallel threads with a progress bar
    (`progress`: None on a terminal only, left there when True):
    (keys, uint8 [N, S, S, C], labels [N] or None, [(bad file, why)])."""
    files = check_source(source)
    workers = min(32, 2 * (os.cpu_count() or 1))
    decoded: list = [None] * len(files)
    with (
        futures.ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(files),
            unit="image",
            desc="decoding",
            mininterval=1.0,
            disable=None if progress is None else not progress,
            leave=bool(progress),
        ) as bar,
    ):
        jobs = {pool.submit(_decode_one, source, rel): i for i, rel in enumerate(files)}
        for job in futures.as_completed(jobs):
            decoded[jobs[job]] = job.result()
            bar.update(1)
    bad = [(rel, why) for rel, why in zip(files, decoded, strict=True) if isinstance(why, str)]
    if bad and not source.skip_bad_files:
        rel, why = bad[0]
        raise images_lib.ImageError(
            f"{os.path.join(source.path, rel)} cannot be read ({why}); remove or fix it, or set "
            f"data.skip_bad_files=True to skip such files ({len(bad)} in all)"
        )
    good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    if len(good) < 2:
        raise images_lib.ImageError(
            f"data.path={source.path!r} has {len(good)} readable images; a data set needs 2"
        )
    keys = [files[i] for i in good]
    labels = None
    if names:
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index.get(k.split(os.sep)[0], -1) for k in keys], np.int64)
        if (labels < 0).any():
            loose = keys[int(np.argmax(labels < 0))]
            raise images_lib.ImageError(
                f"{os.path.join(source.path, loose)} is not in a subfolder, so it has no label "
                f"under data.labels_from_folders=True; move it into its class's folder"
            )
    bad_paths = [(os.path.join(source.path, rel), why) for rel, why in bad]
    return keys, np.stack([decoded[i] for i in good]), labels, bad_paths


def _array_labels(path: str) -> bool:
    if not path.endswith(".npz"):
        return False
    with np.load(path) as f:
        return any(k in f.files for k in ("labels", "y"))


def _load_arrays(source: Source):
    """A .npz/.npy of images fitted to the geometry: (keys, uint8 [N, S, S, C], labels, [])."""
    check_source(source)
    labels = None
    if source.path.endswith(".npz"):
        with np.load(source.path) as f:
            if not f.files:
                raise images_lib.ImageError(f"{source.path} holds no arrays")
            x = f["images"] if "images" in f.files else f[f.files[0]]
            for key in ("labels", "y"):
                if key in f.files:
                    labels = np.asarray(f[key]).astype(np.int64).reshape(-1)
                    break
    else:
        x = np.load(source.path)
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or len(x) < 2:
        raise images_lib.ImageError(
            f"{source.path} holds an array of shape {x.shape}; use images [N, H, W, C] (C 1, 3 or "
            f"4) or [N, H, W], N >= 2"
        )
    if x.dtype != np.uint8:
        lo = -1.0 if float(x.min()) < 0 else 0.0
        x = np.round((np.clip(x.astype(np.float32), lo, 1.0) - lo) / (1.0 - lo) * 255)
        x = x.astype(np.uint8)
    x = x[..., :3] if x.shape[-1] == 4 else x  # alpha dropped
    if x.shape[-1] == 3 and source.channels == 1:
        x = np.round(x @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
    fitted = images_lib.fit_images(x, source.image_size, source.channels)
    if labels is not None and len(labels) != len(fitted):
        raise images_lib.ImageError(f"{source.path}: {len(labels)} labels for {len(fitted)} images")
    keys = [f"{i:09d}" for i in range(len(fitted))]
    return keys, fitted, labels, []
