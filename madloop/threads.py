"""Thread counts that do not change numbers.

torch's CPU kernels split their sums among its intra-op threads, so a convolution's float32 rounding (and a
trained network, which amplifies it) depends on how many threads the process has, which in turn depends on
the number of workers. Code whose numbers madloop promises to repeat runs its torch work on one thread
(``one_thread``); parallelism then comes from the worker processes.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def one_thread(enabled: bool = True):
    """Run torch on one intra-op thread inside the block (when ``enabled``); the count is restored after."""
    if not enabled:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
