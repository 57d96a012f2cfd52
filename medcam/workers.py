"""Where a cohort's cases run: worker processes of medcam's own pool, or the caller's executor.

A worker process holds the model once (:class:`ModelHandle`): a checkpoint or bundle is loaded
there from its file, a model built in Python arrives pickled. The pool medcam starts uses the
``spawn`` start method, so nothing of the parent's threads (torch's pools, a caller's) is forked;
its initializer is the only place medcam tunes a process, and the process is its own: torch's
thread count shared out between the workers, Ctrl-C left to the parent, and ``gc.freeze()`` once
the model is loaded.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from medcam.errors import MedcamError
from medcam.models.explainable import ExplainableModel

__all__ = ["ModelHandle", "model_handle", "process_pool", "worker_model"]

#: The models this process holds, by :attr:`ModelHandle.key`.
_MODELS: dict[str, ExplainableModel] = {}


@dataclass(frozen=True)
class ModelHandle:
    """How a worker gets the model: from ``source`` (a checkpoint or bundle, with the class names
    and device it was loaded with), or from ``payload`` (the pickled model). ``key`` is the same
    for every handle of one model, so a process loads it once."""

    key: str
    source: str | None = None
    class_names: tuple[str, ...] = ()
    device: str = "cpu"
    payload: bytes | None = None

    def light(self) -> ModelHandle:
        """This handle without the pickled model: for tasks sent where the model is loaded already."""
        return dataclasses.replace(self, payload=None)

    def load(self) -> ExplainableModel:
        """The model: loaded from its file, or unpickled from the handle's payload."""
        if self.source is not None:
            from medcam.models import load_model

            return load_model(self.source, device=self.device, class_names=self.class_names or None)
        if self.payload is None:
            raise MedcamError("this worker process was not given the model (a handle without it reached a new worker)")
        return pickle.loads(self.payload)


def model_handle(model: ExplainableModel) -> ModelHandle:
    """The handle of ``model``: its file when it came from one, else the model pickled.

    Raises
    ------
    MedcamError
        A model built in Python that cannot be pickled (a lambda in its transform, say).
    """
    provenance = model.provenance
    key = f"{model.weights_sha256()}:{provenance.format}:{provenance.path}:{','.join(model.class_names)}:{model.device}"
    if provenance.format in ("medcam-checkpoint", "monai-bundle") and provenance.path is not None and Path(provenance.path).exists():
        return ModelHandle(key, str(Path(provenance.path).resolve()), model.class_names, str(model.device))
    try:
        payload = pickle.dumps(dataclasses.replace(model, _cache={}))
    except Exception as exc:  # noqa: BLE001 - pickling fails in many ways
        raise MedcamError(f"the model {provenance.name!r} cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                          "save it as a checkpoint, or run with one worker") from exc
    return ModelHandle(key, None, model.class_names, str(model.device), payload)


def worker_model(handle: ModelHandle) -> ExplainableModel:
    """The model of ``handle`` in this process: loaded on first use, then kept."""
    model = _MODELS.get(handle.key)
    if model is None:
        model = _MODELS[handle.key] = handle.load()
    return model


def _initialise_worker(handle: ModelHandle, threads: int) -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool

    torch.set_num_threads(threads)  # this process is the pool's own: its workers share the CPUs
    worker_model(handle)
    gc.freeze()  # the model and the imports are never collected: keep them out of every collection


def process_pool(workers: int, handle: ModelHandle) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each holding the model once, with the CPUs shared between them."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_initialise_worker, initargs=(handle, threads))
