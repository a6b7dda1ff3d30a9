"""One run per workdir: an advisory lock held for the life of the run (released by the kernel
when the process dies, so a crashed run's lock is taken over), and an early writability check."""

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

from genimg_jax.core.errors import WorkdirError

LOCK_NAME = ".genimg.lock"


@contextlib.contextmanager
def exclusive(workdir: str) -> Iterator[None]:
    """Holds `workdir`'s lock; raises WorkdirError naming the holder if a live run has it."""
    path = os.path.join(workdir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirError(
                f"workdir {workdir} is in use by another run ({_holder(path)}); wait for it, "
                f"stop it, or choose another --workdir"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.ctime()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            h = json.load(f)
        return f"pid {h['pid']} on {h['host']}, started {h['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def ensure_writable(workdir: str) -> None:
    """Creates `workdir` and checks a file can be written there, else a WorkdirError."""
    if "://" in workdir:  # os.makedirs would make a local folder named "gs:"
        raise WorkdirError(
            f"workdir {workdir} is a URL, and genimg writes workdirs with local file I/O; mount "
            f"the bucket (e.g. gcsfuse) and give its local path as --workdir"
        )
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_probe.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(
            f"cannot write to workdir {workdir}: {e.strerror}; choose a writable --workdir "
            f"(or free space on its disk)"
        ) from None
