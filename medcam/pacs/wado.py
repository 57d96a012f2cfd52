"""Studies and series fetched from a DICOMweb server (WADO-RS) into a local folder, one folder per
image series, so the readers see what they would see on disk."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from medcam.pacs.targets import PacsError, _refuse_inline_credentials, dicomweb_session, http_reason

__all__ = ["fetch", "split_url", "NON_IMAGE_MODALITIES"]

#: Series of these modalities hold no image to explain (reports, segmentations, presentation states ...).
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "PR", "KO", "DOC", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "FID", "PLAN",
                                  "AU", "ECG", "HD"})
_UID = r"[0-9]+(?:\.[0-9]+)*"


def split_url(url: str) -> tuple[str, str, str | None]:
    """``https://host/dicom-web/studies/S[/series/R]`` -> (base URL, study UID, series UID or None)."""
    _refuse_inline_credentials(url)
    match = re.fullmatch(rf"(https?://.+?)/studies/({_UID})(?:/series/({_UID}))?/?", url.strip())
    if match is None:
        raise PacsError(f"{url}: expected a DICOMweb study or series URL (.../studies/<StudyInstanceUID>"
                        "[/series/<SeriesInstanceUID>])")
    return match.group(1), match.group(2), match.group(3)


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def fetch(url: str, folder: str | Path, *, log: Callable[[str], None] = lambda line: None) -> list[Path]:
    """The image series of a DICOMweb study or series URL, written under ``folder`` (one folder per
    series, named by its SeriesInstanceUID). A study's non-image series (SR, SEG, ...) are left out;
    a series URL that names one is refused.

    Raises
    ------
    PacsError
        The URL is malformed, the server cannot be reached or refuses us, or it holds no image
        series there; every message names the URL and the reason.
    """
    import requests
    from dicomweb_client.api import DICOMwebClient

    base, study_uid, series_uid = split_url(url)
    client = DICOMwebClient(url=base, session=dicomweb_session(base), timeout=120)
    folder = Path(folder)
    try:
        found = client.search_for_series(study_instance_uid=study_uid, get_remaining=True)
    except (requests.RequestException, ValueError) as exc:  # dicomweb-client raises HTTPError or ValueError
        raise PacsError(http_reason(exc, url)) from None
    series = {_value(item, "0020000E"): _value(item, "00080060") for item in found}
    if series_uid is not None:
        if series_uid not in series:
            raise PacsError(f"{url}: HTTP 404 not found on the server (no such series in study {study_uid})")
        series = {series_uid: series[series_uid]}
        if series[series_uid] in NON_IMAGE_MODALITIES:
            raise PacsError(f"{url}: a {series[series_uid]} series, not an image series; give an image series or the study")
    wanted = [uid for uid, modality in series.items() if modality not in NON_IMAGE_MODALITIES]
    if not wanted:
        raise PacsError(f"{url}: no image series in the study (found {sorted(set(series.values())) or 'none'})")
    written = []
    for uid in wanted:
        try:
            datasets = client.retrieve_series(study_uid, uid)
        except (requests.RequestException, ValueError) as exc:
            raise PacsError(http_reason(exc, f"{base}/studies/{study_uid}/series/{uid}")) from None
        target = folder / uid
        target.mkdir(parents=True, exist_ok=True)
        for index, ds in enumerate(datasets):
            ds.save_as(target / f"{index:05d}.dcm", enforce_file_format=True)
        log(f"fetched series {uid} ({series[uid]}, {len(datasets)} instances)")
        written.append(target)
    return written
