"""Running library builds and training on a Dask cluster (``dask.distributed``), an optional extra.

``build-library --scheduler ADDRESS`` and ``train --scheduler ADDRESS`` connect to a running
scheduler (a ``dask-jobqueue`` SLURMCluster, a Kubernetes cluster, ``dask scheduler`` on a
workstation, or a :class:`distributed.LocalCluster`); without it everything runs on local processes
as before. Install with ``pip install 'xanes-agent[cluster]'``.

Dask moves tasks and results between its own processes with pickle, as every Dask program does: a
scheduler address is code execution on the workers and the client by design, so only connect to a
scheduler you (or your facility) run, and use Dask's TLS security on a shared network. Nothing the
cluster returns is executed here: a build's results are checked (paths, spectra) before they are
written into the cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: Re-runs of a task that raised (a FEFF worker that crashed outside FEFF's own retry); a task whose
#: worker died is re-scheduled by the scheduler itself (``distributed.scheduler.allowed-failures``).
TASK_RETRIES = 2


class ClusterError(RuntimeError):
    """The cluster could not be used (Dask not installed, scheduler unreachable)."""


def connect(address: str, timeout: float = 20.0) -> Any:
    """A ``distributed.Client`` for the scheduler at ``address`` (e.g. ``tcp://10.0.0.5:8786``).

    Raises :class:`ClusterError` naming what is missing or unreachable.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError("--scheduler needs Dask: pip install 'xanes-agent[cluster]'") from exc
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"no Dask scheduler answered at {address} within {timeout:g} s: {exc}") from exc


def describe(client: Any) -> str:
    """One line for the terminal: where the scheduler is, its workers and threads, the dashboard."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    dash = client.dashboard_link if "dashboard" in info.get("services", {}) else "off"
    return f"Dask scheduler {client.scheduler.address}: {len(workers)} workers, {threads} threads; dashboard {dash}"


@contextlib.contextmanager
def joblib_on(client: Any) -> Iterator[None]:
    """Run the joblib work inside the block (each seed's forest) as tasks on ``client``'s cluster.

    Every seed forest is one joblib task with its own fixed random state, so the forests (and the
    bundles assembled from them) are the same bit for bit as a local run with the same seeds.
    """
    import joblib

    with client.as_current(), joblib.parallel_config(backend="dask", n_jobs=-1):
        yield
