"""Where a model's weights come from: format, name, file and SHA-256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelProvenance", "file_sha256"]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelProvenance:
    """Where the weights come from: ``format`` is "medcam-checkpoint", "monai-bundle" or "module"."""

    format: str
    name: str
    path: Path | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The provenance as JSON-ready values."""
        return {"format": self.format, "name": self.name, "path": str(self.path) if self.path else None, "sha256": self.sha256}
