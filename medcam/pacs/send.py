"""Sending finished output sets to a PACS, with a ledger per set (``.<name>.sent.json``: the SOP
Instance UIDs each destination has acknowledged), so a re-run sends only what is missing and a
set that was never completely written is never sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from medcam.pacs.targets import PacsError, Target, parse_target

__all__ = ["SendResult", "send_outputs", "dicom_outputs"]

_NOT_DICOM = (".nii", ".nii.gz", ".png", ".json", ".csv", ".txt", ".lock", ".partial")


@dataclass
class SendResult:
    """What a send did: the instances sent to ``target``, and those found sent there before."""
    target: str
    sent: int = 0
    already: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent to {self.target}" + (f", {self.already} sent before" if self.already else "")


def _ledger_path(marker: Path) -> Path:
    return marker.with_name(marker.name.replace(".complete.json", ".sent.json"))


def dicom_outputs(marker: Path) -> list[Path]:
    """The DICOM files of the completed set whose completion marker is ``marker``."""
    listed = json.loads(marker.read_text(encoding="utf-8")).get("outputs", [])
    files: list[Path] = []
    for entry in listed:
        path = Path(entry) if Path(entry).is_absolute() else marker.parent / entry
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += [p for p in candidates if not p.name.lower().endswith(_NOT_DICOM) and not p.name.startswith(".")]
    return files


def send_outputs(folder: str | Path, target: str | Target, *, names: Sequence[str] | None = None,
                 calling_aet: str = "MEDCAM", log: Callable[[str], None] = lambda line: None) -> SendResult:
    """Send every completed output set under ``folder`` (searched recursively; with ``names``, only
    the sets of those names in ``folder`` itself) to ``target``: the DICOM objects (PM, SC series,
    SEG, SR) not yet acknowledged by it, by STOW-RS for a DICOMweb URL, by C-STORE for
    ``dimse://AET@host:port``.

    Raises
    ------
    PacsError
        No completed set there, the destination cannot be reached or refuses an object. What
        was acknowledged before the failure stays in the ledger (a re-run sends the rest).
    """
    target = parse_target(target) if isinstance(target, str) else target
    folder = Path(folder)
    if names is None:
        markers = sorted(folder.rglob(".*.complete.json"))
    else:
        from medcam.export.atomic import completion_marker

        markers = [marker for marker in (completion_marker(folder, name) for name in names) if marker.exists()]
    if not markers:
        raise PacsError(f"{folder}: no completed output set to send (written by medcam explain, with its completion marker)")
    result = SendResult(str(target))
    for marker in markers:
        ledger_path = _ledger_path(marker)
        ledger = json.loads(ledger_path.read_text(encoding="utf-8")) if ledger_path.exists() else {}
        done = set(ledger.get(str(target), []))
        pending = []
        for path in dicom_outputs(marker):  # the header tells what was sent; only what was not is read in full
            if str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID) in done:
                result.already += 1
            else:
                pending.append(pydicom.dcmread(path))
        if not pending:
            continue

        def acknowledge(uids: list[str]) -> None:
            done.update(uids)
            ledger[str(target)] = sorted(done)
            _write_ledger(ledger_path, ledger)

        if target.kind == "dicomweb":
            from medcam.pacs.stow import stow

            stow(target, pending, acknowledge)
        else:
            from medcam.pacs.dimse import c_store

            c_store(target, pending, acknowledge, calling_aet=calling_aet)
        result.sent += len(pending)
        log(f"{marker.parent}: {len(pending)} objects sent to {target}")
    return result


def _write_ledger(path: Path, ledger: dict) -> None:
    from medcam.export.atomic import atomic_output

    with atomic_output(path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
