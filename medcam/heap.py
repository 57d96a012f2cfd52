"""Give the C allocator's free memory back to the operating system before a memory-hungry step.

glibc keeps memory freed by small and medium allocations (pydicom's objects, numpy's small
arrays, MONAI's bookkeeping) in its heap for reuse; after reading and preprocessing a large
series that is about 120 MB of resident memory no one uses. ``malloc_trim`` returns it. Elsewhere
(another C library, another system) nothing happens.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["return_free_heap"]


def return_free_heap() -> bool:
    """Ask glibc to return its free heap pages to the system; True if it could be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return False
    trim(0)
    return True
