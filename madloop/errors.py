"""The one error type users see: bad input, reported as one clear line."""


class MadloopError(ValueError):
    """Invalid input or state. The CLI prints its message as one line and exits with code 2."""


class Stopped(BaseException):
    """A signal (SIGTERM: a batch scheduler's preemption) stopped the run; the directory stays resumable.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum

    def __reduce__(self):  # pickle (a worker process's error) rebuilds it from its signal, not from its message
        return type(self), (self.signum,)
