"""What every file madloop writes shares: the version it is stamped with, and the atomic write.

The ground floor of the package (README, "How the code is laid out"): run directories (store), the feature
network's cache (features) and figures all write through ``atomic_write`` and record ``__version__``, without
reaching up to the package or the store. ``madloop.__version__`` and ``madloop.store.atomic_write`` are these.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__version__ = "0.1.0"

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, for the files atomic_write makes


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are read by others as any file is
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
