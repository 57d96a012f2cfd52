"""What an input path may be: a regular file or a folder, nothing else.

A named pipe, socket or device would make a reader block forever or read something that is not a
study; they are refused before anything opens them.
"""

from __future__ import annotations

import stat
from pathlib import Path

from medcam.errors import ImageReadError

__all__ = ["checked_input"]

_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def checked_input(path: str | Path, what: str = "") -> Path:
    """``path`` as a Path when it is a regular file or a folder (links followed).

    Raises
    ------
    ImageReadError
        It does not exist, cannot be looked at, or is a pipe, socket or device. ``what`` (say,
        "lesion mask of case 3") is put after the path in the message.
    """
    path = Path(path)
    where = f"{path}: {what}: " if what else f"{path}: "
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageReadError(f"{where}no such file or folder") from None
    except OSError as exc:
        raise ImageReadError(f"{where}cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise ImageReadError(f"{where}is {kind}, not a file or folder (medcam reads regular files and folders only)")
