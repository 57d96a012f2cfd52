"""Refusing volumes that cannot fit before the memory is asked for (a hostile or corrupt header
can declare hundreds of GiB)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from medcam.errors import ImageReadError

__all__ = ["physical_memory", "check_volume_fits"]


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_volume_fits(shape: Sequence[int], where: str) -> None:
    """Raise :class:`ImageReadError` when a float32 volume of ``shape`` is larger than this
    machine's memory; ``where`` (a file or series) starts the message."""
    count = 1
    for n in shape:
        count *= int(n)
    memory = physical_memory()
    if memory is not None and count * 4 > memory:
        raise ImageReadError(f"{where}: {' x '.join(str(int(n)) for n in shape)} voxels need {count * 4 / 2**30:.1f} GiB "
                             f"as float32, more than this machine's {memory / 2**30:.1f} GiB")
