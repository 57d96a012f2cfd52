"""STOW-RS: DICOM objects stored on a DICOMweb server, in batches, each acknowledged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pydicom

from medcam.pacs.targets import PacsError, Target, dicomweb_session, http_reason

_BATCH = 64


def stow(target: Target, datasets: Sequence[pydicom.Dataset], acknowledge: Callable[[list[str]], None]) -> None:
    """Store ``datasets`` at ``target.url``; ``acknowledge`` gets the SOP Instance UIDs of every batch
    the server accepted. Raises PacsError naming the first instance refused and why."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=target.url, session=dicomweb_session(target.url), timeout=120)
    for first in range(0, len(datasets), _BATCH):
        batch = list(datasets[first : first + _BATCH])
        try:
            response = client.store_instances(batch)
        except (requests.RequestException, ValueError) as exc:
            raise PacsError(http_reason(exc, target.url)) from None
        refused = list(response.get("FailedSOPSequence", []) if response is not None else [])
        stored = [str(item.ReferencedSOPInstanceUID) for item in (response.get("ReferencedSOPSequence", []) if response is not None else [])]
        acknowledge(stored if response is not None and "ReferencedSOPSequence" in response else [str(ds.SOPInstanceUID) for ds in batch])
        if refused:
            codes = sorted({int(getattr(item, "FailureReason", 0) or 0) for item in refused})
            raise PacsError(f"{target.url}: the server refused {len(refused)} of {len(batch)} objects "
                            f"(failure reason {', '.join(f'0x{code:04X}' for code in codes)})")
