"""Preemption: SIGTERM/SIGINT ask the loop to stop after the current step, save and exit."""

import signal
import threading
from typing import Self

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager that records SIGTERM/SIGINT instead of dying; a second signal of the same
    kind while the run is saving falls back to the default behaviour."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: stop waiting for the save
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.signum = signum

    def agreed(self) -> int | None:
        """The signal number if any process was asked to stop (a collective when several
        processes run: call it at the same steps on all of them)."""
        if jax.process_count() == 1:
            return self.signum
        mine = np.int32(self.signum or 0)
        return int(np.max(multihost_utils.process_allgather(mine))) or None
