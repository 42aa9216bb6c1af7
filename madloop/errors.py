"""The one error type users see: bad input, reported as one clear line."""


class MadloopError(ValueError):
    """Invalid input or state. The CLI prints its message as one line and exits with code 2."""
