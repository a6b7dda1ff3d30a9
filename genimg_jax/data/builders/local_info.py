"""The DatasetInfo of a data set built on this machine."""

import tensorflow_datasets as tfds


class LocalDatasetInfo(tfds.core.DatasetInfo):
    """A `tfds.core.DatasetInfo` that never looks for precomputed info on TFDS's GCS bucket.

    A builder whose data is not prepared yet asks its info to load that bucket's copy, and
    TFDS makes a temporary directory for it first and leaves it behind, empty, whether GCS is
    reachable or not (tensorflow_datasets 4.9.10, `DatasetInfo.initialize_from_bucket`): one
    `/tmp/tmp*tfds` per preparation. The data sets built here are never on that bucket.
    """

    def initialize_from_bucket(self) -> None:
        pass
