"""A cohort on a Dask distributed cluster: an existing scheduler, or a ``LocalCluster`` started here.

Each Dask worker loads the model once, when the plugin :class:`ModelPlugin` is registered (and on
any worker that joins later or is restarted). Cases are tasks; a worker lost mid-case has its task
run again elsewhere by the scheduler, and what it left half-written has no completion marker, so
it is never taken for a result. Needs ``pip install 'dask[distributed]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from distributed import Client, LocalCluster, WorkerPlugin

from medcam.errors import MedcamError
from medcam.workers import ModelHandle, worker_model

__all__ = ["ModelPlugin", "cluster_client", "cluster_executor"]


class ModelPlugin(WorkerPlugin):
    """Loads a model into a worker process when the worker starts (or when registered)."""

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    def setup(self, worker) -> None:
        """Load the model once in the Dask worker this plugin is registered on."""
        worker_model(self.handle)


def cluster_executor(client: Client, handle: ModelHandle) -> Executor:
    """An executor on ``client``'s cluster whose workers hold the model of ``handle``."""
    client.register_plugin(ModelPlugin(handle), name=f"medcam-model-{handle.key[:24]}")
    return client.get_executor(pure=False)


@contextmanager
def cluster_client(address: str, *, timeout: float = 30.0) -> Iterator[Client]:
    """A client of the scheduler at ``address`` (``tcp://HOST:PORT``), or of a ``LocalCluster`` of N
    single-threaded worker processes started for ``local:N``; closed (the cluster too) on exit."""
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise MedcamError(f"--scheduler {address}: expected local:N with N >= 1 worker processes")
        with LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
        return
    if not address.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
        raise MedcamError(f"--scheduler {address}: expected tcp://HOST:PORT or local:N")
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise MedcamError(f"--scheduler {address}: cannot reach a Dask scheduler there ({type(exc).__name__}: {exc})") from exc
    with client:
        yield client
