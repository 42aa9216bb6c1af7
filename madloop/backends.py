"""Where chunks of runs execute: joblib's loky processes (default), a dask cluster, or ray.

The unit of work is a chunk of runs of one configuration; results do not depend on the backend or
the number of workers. Workers write their rows into the run directory, so on a multi-machine
cluster that directory must be on a file system every worker sees.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from joblib import parallel_config

from madloop.errors import MadloopError

BACKENDS = ("loky", "dask", "ray")


@contextlib.contextmanager
def backend(name: str = "loky", scheduler: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Run the joblib work inside this block on the named backend.

    dask: connect to ``scheduler`` (tcp://HOST:PORT), or start a local cluster of ``workers`` processes.
    """
    if name not in BACKENDS:
        raise MadloopError(f"unknown backend '{name}'; choose from: {', '.join(BACKENDS)}")
    if scheduler is not None and name != "dask":
        raise MadloopError("--scheduler goes with --backend dask")
    if name == "loky":
        yield
    elif name == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise MadloopError("the dask backend needs dask.distributed: pip install 'madloop[dask]'") from None
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="10s")
            except OSError as err:
                raise MadloopError(f"cannot reach the dask scheduler at {scheduler}: {err}") from None
        else:
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None))
        with client, parallel_config(backend="dask"):
            yield
    else:
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise MadloopError("the ray backend needs ray: pip install 'madloop[ray]'") from None
        register_ray()
        if not ray.is_initialized():
            ray.init(num_cpus=workers)
        with parallel_config(backend="ray"):
            yield
