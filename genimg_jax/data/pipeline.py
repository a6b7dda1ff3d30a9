"""TFDS input pipeline: the batch for step s is a pure function of (seed, s).

Every data set, bundled, standard or the user's own images (`builders.user_images`), is read
through its TFDS builder's data source from array_record files.
The example at global position p = s·B + i is `perm(seed, p // N)[p % N]`, where `perm(seed, e)`
is epoch e's permutation: every example is seen once per epoch, and nothing is carried between
steps, so a resumed run reads exactly the batches an uninterrupted one would have read.
"""

import collections
import contextlib
import difflib
import fcntl
import functools
import logging
import os
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Protocol

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from genimg_jax.core.errors import GenimgError
from genimg_jax.data import builders
from genimg_jax.data.builders import user_images
from genimg_jax.data.images import fit_images

IN_MEMORY_LIMIT_BYTES = 2 << 30  # smaller splits are decoded once and kept as one array
KEEP_DECODED = 4  # decoded splits kept per process, for the next run of an in-process sweep
STANDARD_NAMES = ("mnist", "fashion_mnist", "cifar10", "celeb_a")
QUIET_LOGGERS = ("absl", "tensorflow_datasets")  # TFDS logs through absl's logger


class DataError(GenimgError):
    """A data set cannot be read; the message says how to make it readable."""

    exit_code = 2


class ImageSource(Protocol):
    """Random access to a split's uint8 images [H, W, C] and optional int labels."""

    def __len__(self) -> int: ...
    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]: ...


class ArraySource:
    """A split decoded once into memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None):
        self.images, self.labels = images, labels  # [N, H, W, C] uint8, [N] int
        for array in (images, labels):  # shared by every run of the process that reads it
            if array is not None:
                array.flags.writeable = False

    def __len__(self) -> int:
        return len(self.images)

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        out = {"image": self.images[indices]}
        if self.labels is not None:
            out["label"] = self.labels[indices]
        return out


class StreamingSource:
    """A split too large for memory, read example by example from array_record files."""

    def __init__(self, source, has_label: bool):
        self.source, self.has_label = source, has_label

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        examples = self.source.__getitems__([int(i) for i in indices])
        out = {"image": np.stack([e["image"] for e in examples])}
        if self.has_label:
            out["label"] = np.array([e["label"] for e in examples], np.int32)
        return out


def default_data_dir(data_dir: str | None) -> str:
    """The configured data dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )


def _download_host_reachable(timeout: float = 3.0) -> bool:
    """Whether TFDS's download host answers within `timeout` seconds (DNS included)."""
    result = []

    def probe():
        try:
            socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def user_source(data: ml_collections.ConfigDict) -> user_images.Source | None:
    """The user's own images a data config names (`data.name` "folder" or "arrays", at
    `data.path`), or None for a TFDS name."""
    if data.name not in user_images.KINDS:
        return None
    return user_images.Source(
        kind=data.name,
        path=os.path.abspath(os.path.expanduser(data.path)),
        image_size=data.image_size,
        channels=data.channels,
        labels_from_folders=data.labels_from_folders,
        skip_bad_files=data.skip_bad_files,
    )


def data_key(data: ml_collections.ConfigDict) -> str:
    """A name for cache files derived from the data (reference features, classifiers): the
    TFDS name, or for the user's images the name and the hash of their content."""
    source = user_source(data)
    return data.name if source is None else f"{data.name}-{user_images.signature(source)}"


def prepare_data(
    data: ml_collections.ConfigDict, verbose: bool = False
) -> tfds.core.DatasetBuilder:
    """`prepare` for a data config (a TFDS name, or the user's folder or arrays)."""
    return prepare(data.name, data.data_dir, user_source(data), verbose=verbose)


def load_data_split(data: ml_collections.ConfigDict, split: str) -> "ImageSource":
    """`load_split` for a data config (a TFDS name, or the user's folder or arrays)."""
    return load_split(data.name, split, data.data_dir, user_source(data))


class _Quiet:
    """While entered (by any thread, nested or not): the loggers QUIET_LOGGERS at ERROR and
    TFDS's progress bars off; the first to enter saves the previous levels and switch, the last
    to leave restores them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[list[int], bool] | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                loggers = [logging.getLogger(n) for n in QUIET_LOGGERS]
                self._saved = ([lg.level for lg in loggers], tqdm_utils._active)
                for lg in loggers:
                    lg.setLevel(max(lg.level, logging.ERROR))
                tfds.disable_progress_bar()
            self._depth += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                levels, bars = self._saved
                for n, level in zip(QUIET_LOGGERS, levels, strict=True):
                    logging.getLogger(n).setLevel(level)
                tfds.display_progress_bar(bars)


_quiet = _Quiet()


def quiet_tfds(verbose: bool = False) -> contextlib.AbstractContextManager:
    """A context in which TFDS says nothing below an error: absl's and TFDS's loggers at ERROR
    and TFDS's progress bars off, restored on leaving (nothing changes when `verbose`)."""
    return contextlib.nullcontext() if verbose else _quiet


def prepare(
    name: str,
    data_dir: str | None = None,
    source: user_images.Source | None = None,
    verbose: bool = False,
) -> tfds.core.DatasetBuilder:
    """Writes data set `name` (or the user's images `source`) as array_record under `data_dir`
    if it is not there yet.

    Bundled data sets and a user's images are built offline. Standard ones need the internet
    and TensorFlow (TFDS encodes their images with it); when either is missing, a DataError
    says what to do.

    It says one line, "preparing ... into DIR", when it writes the data; TFDS's logging below
    errors, its messages and progress bars only when `verbose` (and the bar of the decoding of
    a folder on a terminal).
    """
    data_dir = default_data_dir(data_dir)
    with quiet_tfds(verbose):
        if source is not None:
            try:
                user_images.check_source(source)  # an empty folder says so before anything else
            except user_images.images_lib.ImageError as e:
                raise DataError(str(e)) from None
        builder = _builder(name, data_dir, source)
        if builder.is_prepared():
            return builder
        os.makedirs(data_dir, exist_ok=True)
        lock_name = f".{builder.name}.{builder.builder_config.name if source else ''}.prepare.lock"
        with open(os.path.join(data_dir, lock_name), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # processes sharing a data dir prepare it once
            builder = _builder(name, data_dir, source)
            if builder.is_prepared():
                return builder
            if not verbose:  # TFDS prints "Downloading and preparing ..." and "... prepared"
                builder._log_download_bytes = builder._log_download_done = lambda: None
            if source is not None:
                builder.progress = True if verbose else None
                _say_preparing(builder, _describe_source(builder))
                try:
                    builder.download_and_prepare()
                except user_images.images_lib.ImageError as e:
                    raise DataError(str(e)) from None
                user_images.write_bad_files(builder)
                return builder
            return _prepare_locked(builder, name, data_dir)


def _describe_source(builder: user_images.UserImages) -> str:
    """What the user's images `builder` prepares, for `_say_preparing`."""
    source = builder.builder_config.source
    geometry = f"{source.image_size}x{source.image_size}x{source.channels}"
    if source.kind == "folder":
        return f"{builder.builder_config.num_images} images from {source.path} ({geometry})"
    return f"the images of {source.path} ({geometry})"


def _say_preparing(builder: tfds.core.DatasetBuilder, what: str) -> None:
    print(f"preparing {what} into {builder.data_dir}", flush=True)


def _builder(
    name: str, data_dir: str, source: user_images.Source | None = None
) -> tfds.core.DatasetBuilder:
    """TFDS's builder of `name` (or of the user's images `source`), or a one-line DataError
    naming the close known names."""
    if source is None and name in user_images.KINDS:
        raise DataError(
            f"data.name={name!r} reads your images at data.path; it is prepared by the run "
            f"that names it (genimg train --config C --config.data.name={name} "
            f"--config.data.path=PATH)"
        )
    if source is not None:
        config = user_images.UserImagesConfig(source)
        return user_images.UserImages(config=config, data_dir=data_dir, file_format="array_record")
    try:
        return tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(unknown_name_message(name)) from None


def unknown_name_message(name: str) -> str:
    """What to say of a data set name that neither genimg nor TFDS knows."""
    known = list(
        dict.fromkeys([*builders.BUNDLED, *tfds.list_builders(with_community_datasets=False)])
    )
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    return (
        f"data.name={name!r} is not a data set genimg or TFDS knows"
        + (f"; close names: {', '.join(close)}" if close else "")
        + f". Offline: {' or '.join(builders.BUNDLED)}; with internet, a TFDS name such as "
        f"{', '.join(STANDARD_NAMES)} (`tfds.list_builders()` lists them all)"
    )


def _prepare_locked(builder, name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Prepares `name` (the caller holds the data dir's lock for it)."""
    if name not in builders.BUNDLED:
        how = (
            f"On a machine with internet, run `pip install tensorflow` then `genimg prepare "
            f"--data {name} --data_dir DIR` and copy DIR here (or set data.data_dir / "
            f"$TFDS_DATA_DIR to it). Offline, use data.name='bundled_mnist' or 'shapes'."
        )
        try:
            import tensorflow  # noqa: F401  TFDS needs it to encode standard data sets' images
        except ImportError:
            raise DataError(
                f"Data set {name!r} is not prepared in {data_dir}, and preparing it needs "
                f"TensorFlow, which is not installed. {how}"
            ) from None
        if not _download_host_reachable():
            raise DataError(
                f"Data set {name!r} is not prepared in {data_dir}, and the download host "
                f"storage.googleapis.com cannot be reached from here. {how}"
            )
    _say_preparing(builder, name)
    builder.download_and_prepare()
    return builder


_decoded: collections.OrderedDict[tuple, ArraySource] = collections.OrderedDict()


def load_split(
    name: str, split: str, data_dir: str | None = None, source: user_images.Source | None = None
) -> ImageSource:
    """The split as an ImageSource, preparing the data set (or the user's images `source`)
    first when needed. A split that fits in memory is decoded once per process while its files
    stay the same (the runs of an in-process sweep, a run's training and evaluation share it; a
    rewritten data set is read again)."""
    builder = prepare(name, data_dir, source)
    features = builder.info.features
    if "image" not in features:
        raise DataError(f"Data set {name!r} has no 'image' feature; features: {list(features)}")
    if split not in builder.info.splits:
        raise DataError(
            f"data split {split!r} does not exist in {name!r}; splits: {list(builder.info.splits)}"
        )
    key = (str(builder.data_dir), split, _files_signature(str(builder.data_dir)))
    if key in _decoded:
        _decoded.move_to_end(key)
        return _decoded[key]
    records = builder.as_data_source(split=split)
    has_label = "label" in features
    shape = features["image"].shape
    n = len(records)
    streaming = StreamingSource(records, has_label)
    if None in shape or n * int(np.prod(shape)) > IN_MEMORY_LIMIT_BYTES:
        return streaming
    try:
        everything = streaming.get(np.arange(n))
    except Exception as e:  # noqa: BLE001  array_record/zlib raise many types for damaged files
        raise DataError(
            f"data set {name!r} in {builder.data_dir} cannot be read ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); delete {builder.data_dir} and run again "
            + (
                "(it is prepared again)"
                if source
                else f"(`genimg prepare --data {name}` rebuilds it)"
            )
        ) from None
    _decoded[key] = ArraySource(everything["image"], everything.get("label"))
    while len(_decoded) > KEEP_DECODED:
        _decoded.popitem(last=False)
    return _decoded[key]


def _files_signature(directory: str) -> tuple:
    """(name, size, mtime) of every file of a prepared data set: changes when it is rewritten."""
    with os.scandir(directory) as entries:
        stats = {e.name: e.stat() for e in entries if e.is_file()}
    return tuple(sorted((name, s.st_size, s.st_mtime_ns) for name, s in stats.items()))


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    perm.setflags(write=False)
    return perm


def example_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Indices of the examples in the global batch of `step`: [batch_size] int."""
    positions = step * batch_size + np.arange(batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(positions, n)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        rows = epochs == epoch
        out[rows] = _epoch_permutation(seed, int(epoch), n)[offsets[rows]]
    return out


def scale_images(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """uint8 [0, 255] -> float32 in `value_range` ([-1, 1] for GANs, [0, 1] for VAEs)."""
    lo, hi = value_range
    return images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)


def binarize(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Scaled images thresholded at the middle of `value_range`: each pixel becomes lo or hi
    (for a VAE's [0, 1]: x >= 0.5 -> 1, else 0). Static binarisation: a pure function of the
    pixels, so batches stay a pure function of (seed, step)."""
    lo, hi = value_range
    middle = np.float32((lo + hi) / 2)
    return np.where(images >= middle, np.float32(hi), np.float32(lo)).astype(np.float32)


def model_images(
    images: np.ndarray, value_range: tuple[float, float], binarize_pixels: bool
) -> np.ndarray:
    """Fitted uint8 images as the model sees them: scaled to `value_range`, and binarized when
    the data is (`data.binarize`). Training batches, sample grids' inputs and scored test
    images all pass through here."""
    x = scale_images(images, value_range)
    return binarize(x, value_range) if binarize_pixels else x


class Batches:
    """Deterministic batches of one split: `batches[step]` is this process's share of the
    global batch of `step`, ready for the model (fitted and scaled float32 images)."""

    def __init__(
        self,
        source: ImageSource,
        *,
        seed: int,
        batch_size: int,
        image_size: int,
        channels: int,
        value_range: tuple[float, float],
        process_index: int = 0,
        process_count: int = 1,
        binarize: bool = False,
        draws: int = 1,
    ):
        if batch_size % process_count:
            raise ValueError(
                f"train.batch_size={batch_size} is not divisible by the {process_count} processes"
            )
        self.source, self.seed, self.batch_size = source, seed, batch_size
        self.image_size, self.channels, self.value_range = image_size, channels, value_range
        self.binarize = binarize  # data.binarize: threshold the scaled pixels (see `binarize`)
        # draws > 1: each step holds that many independent batches, stacked on axis 1
        # ([rows, draws, ...]); draw k of step s is the one-draw stream's batch of step s·draws + k
        self.draws = draws
        share = batch_size // process_count
        self.rows = slice(process_index * share, (process_index + 1) * share)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        if self.draws > 1:
            parts = [self._batch(step * self.draws + k) for k in range(self.draws)]
            return {key: np.stack([p[key] for p in parts], axis=1) for key in parts[0]}
        return self._batch(step)

    def _batch(self, step: int) -> dict[str, np.ndarray]:
        indices = example_indices(self.seed, step, self.batch_size, len(self.source))
        example = self.source.get(indices[self.rows])
        images = fit_images(example["image"], self.image_size, self.channels)
        example["image"] = model_images(images, self.value_range, self.binarize)
        return example

    def iterate(self, start: int, stop: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps start..stop-1, prepared `prefetch` steps ahead on a thread."""
        with futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = [
                pool.submit(self.__getitem__, s) for s in range(start, min(start + prefetch, stop))
            ]
            for step in range(start, stop):
                batch = pending.pop(0).result()
                if step + prefetch < stop:
                    pending.append(pool.submit(self.__getitem__, step + prefetch))
                yield batch
