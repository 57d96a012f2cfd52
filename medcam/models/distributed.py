"""Training on several processes: the ranks of a ``torch.distributed`` process group.

The library only reads the process group; the caller starts it (``medcam train`` under
``torchrun`` does, :func:`process_group`). Without one, training runs as one rank of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["Ranks", "barrier", "current_ranks", "process_group"]


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed run: its rank and the world size."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The rank that logs and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world > 1


def current_ranks() -> Ranks:
    """This process's rank and the group's size (0 of 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if current_ranks().distributed:
        dist.barrier()


@contextmanager
def process_group(environ=None) -> Iterator[Ranks]:
    """The process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...), gloo
    (medcam trains on the CPU); none when ``WORLD_SIZE`` is unset or 1. Destroyed on exit. For an
    application's main (the CLI), not for library code."""
    environ = os.environ if environ is None else environ
    if int(environ.get("WORLD_SIZE", "1") or 1) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current_ranks()
        return
    dist.init_process_group("gloo")
    try:
        yield current_ranks()
    finally:
        dist.destroy_process_group()
