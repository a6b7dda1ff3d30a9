"""The failures genimg reports as one clear message (the CLI prints it and exits non-zero,
without a traceback). Each message names the cause and the fix."""


class GenimgError(Exception):
    """Base of every failure with a message meant for the user."""

    exit_code = 1


class ConfigError(GenimgError, ValueError):
    """A config field holds a value that cannot work."""

    exit_code = 2


class WorkdirError(GenimgError):
    """The workdir is held by another run, or cannot be written."""


class CheckpointError(GenimgError):
    """A checkpoint cannot be written, read, or does not fit the config."""


class DivergenceError(GenimgError):
    """Training produced a non-finite loss or gradient."""


class Preempted(GenimgError):
    """SIGTERM/SIGINT stopped the run after a checkpoint; rerunning resumes it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
