"""PACS in and out against a real Orthanc (its DICOMweb plugin and its DICOM port) started here on
127.0.0.1: the bundled CT series stored by STOW-RS, explained from its WADO-RS URL, the outputs sent
back by STOW-RS and by C-STORE, found again by QIDO-RS in the same study, retrieved by WADO-RS with
the local pixel data, and read back by highdicom. A server stopped mid-run, and every bad input, in
one line. With CI set, a missing Orthanc fails the run instead of skipping."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medcam.cli import main
from tests.orthanc import PASSWORD, USER, dicomweb_plugin, orthanc_binary, start_orthanc

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "sample_data" / "ct_lesion_dicom"
MODEL = ROOT / "sample_data" / "models" / "ct3d.pt"
FORMATS = ["--formats", "nifti,pm,sc,seg,sr", "--threshold", "50%"]

if orthanc_binary() is None or dicomweb_plugin() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI: Orthanc and its DICOMweb plugin are missing (apt-get install orthanc orthanc-dicomweb)")
    pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; the README's test command does)",
                allow_module_level=True)


@pytest.fixture
def credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDCAM_DICOMWEB_USER", USER)
    monkeypatch.setenv("MEDCAM_DICOMWEB_PASSWORD", PASSWORD)
    (tmp_path / "pacs.json").write_text("{}")
    monkeypatch.setenv("MEDCAM_PACS_CONFIG", str(tmp_path / "pacs.json"))  # never the machine user's config file
    monkeypatch.delenv("MEDCAM_DICOMWEB_TOKEN", raising=False)


@pytest.fixture
def orthanc(tmp_path):
    server = start_orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def _stow_source(orthanc) -> tuple[str, str]:
    from medcam.pacs.stow import stow
    from medcam.pacs.targets import parse_target

    datasets = [pydicom.dcmread(path) for path in sorted(SERIES.glob("*.dcm"))]
    stow(parse_target(orthanc.dicomweb), datasets, lambda uids: None)
    return str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)


def _series_in_study(orthanc, study_uid: str) -> dict[str, list[str]]:
    """SeriesInstanceUID -> the SOP Class UIDs of its instances, found by QIDO-RS."""
    import requests

    base = f"{orthanc.dicomweb}/studies/{study_uid}"
    auth = (USER, PASSWORD)
    found = {}
    for series in requests.get(f"{base}/series", auth=auth, timeout=30).json():
        uid = series["0020000E"]["Value"][0]
        instances = requests.get(f"{base}/series/{uid}/instances", auth=auth, timeout=30).json()
        found[uid] = sorted({item["00080016"]["Value"][0] for item in instances})
    return found


def _local_dicom(out: Path) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm")))}


def test_explain_from_wado_rs_and_send_by_stow_rs(orthanc, credentials, tmp_path, capsys):
    import highdicom as hd
    from dicomweb_client.api import DICOMwebClient

    from medcam.pacs.targets import dicomweb_session

    study_uid, series_uid = _stow_source(orthanc)
    url = f"{orthanc.dicomweb}/studies/{study_uid}/series/{series_uid}"
    out = tmp_path / "out"
    assert main(["explain", url, "--model", str(MODEL), "--out", str(out), *FORMATS, "--send", orthanc.dicomweb]) == 0
    assert "sent to" in capsys.readouterr().out
    local = _local_dicom(out)
    assert len(local) == 1 + 40 + 1 + 1  # PM, one SC file per slice, SEG, SR

    found = _series_in_study(orthanc, study_uid)  # the outputs sit in the source's study, each its own series
    classes = {sop for sops in found.values() for sop in sops}
    assert {"1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4",
            "1.2.840.10008.5.1.4.1.1.88.34"} <= classes  # PM, SC, SEG, Comprehensive 3D SR
    assert len(found) == 5 and series_uid in found

    client = DICOMwebClient(url=orthanc.dicomweb, session=dicomweb_session(orthanc.dicomweb))
    for uid in found:
        if uid == series_uid:
            continue
        for ds in client.retrieve_series(study_uid, uid):
            mine = local[str(ds.SOPInstanceUID)]
            for keyword in ("PixelData", "FloatPixelData"):
                if keyword in mine:
                    assert ds[keyword].value == mine[keyword].value  # the same pixels, byte for byte
            sop = str(ds.SOPClassUID)
            if sop == "1.2.840.10008.5.1.4.1.1.30":
                pm = hd.pm.ParametricMap.from_dataset(ds)
                assert np.array_equal(pm.pixel_array, hd.pm.ParametricMap.from_dataset(mine).pixel_array)
            elif sop == "1.2.840.10008.5.1.4.1.1.66.4":
                assert hd.seg.Segmentation.from_dataset(ds).number_of_segments == 1
            elif sop == "1.2.840.10008.5.1.4.1.1.88.34":
                assert hd.sr.Comprehensive3DSR.from_dataset(ds).SeriesInstanceUID == mine.SeriesInstanceUID

    # sent once: medcam send finds nothing missing
    assert main(["send", str(out), "--to", orthanc.dicomweb]) == 0
    assert "0 sent to" in capsys.readouterr().out and len(orthanc.rest("/instances")) == 40 + 43


def test_send_by_c_store_and_a_re_run_sends_only_what_is_missing(orthanc, credentials, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(SERIES), "--model", str(MODEL), "--out", str(out), *FORMATS]) == 0
    ledger = out / ".cam.sent.json"
    assert main(["send", str(out), "--to", orthanc.dimse, "--calling-aet", "MEDCAM_TEST"]) == 0
    assert "43 sent to dimse://ORTHANC@127.0.0.1" in capsys.readouterr().out and ledger.exists()
    stored = {orthanc.rest(f"/instances/{i}/tags?simplify")["SOPInstanceUID"] for i in orthanc.rest("/instances")}
    assert stored == set(_local_dicom(out))
    # one object forgotten by the ledger (as if its acknowledgement was lost): a re-run sends it alone
    import json

    entries = json.loads(ledger.read_text())
    (target,) = entries
    entries[target] = entries[target][1:]
    ledger.write_text(json.dumps(entries))
    assert main(["send", str(out), "--to", orthanc.dimse, "--calling-aet", "MEDCAM_TEST"]) == 0
    printed = capsys.readouterr().out
    assert "1 sent to" in printed and "42 sent before" in printed, printed


def test_a_server_stopped_mid_run_keeps_the_outputs_and_a_re_run_sends_them(orthanc, credentials, tmp_path, capsys):
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(SERIES, cohort / "a")
    shutil.copytree(ROOT / "sample_data" / "mr_oblique_dicom", cohort / "b")
    out = tmp_path / "out"
    ports = orthanc.http_port, orthanc.dicom_port
    orthanc.stop()  # the PACS goes away before the outputs are sent
    argv = ["explain", str(cohort), "--model", str(MODEL), "--out", str(out), "--formats", "pm,sc", "--quiet",
            "--allow-modality-mismatch", "--send", orthanc.dicomweb]
    assert main(argv) == 1
    rows = list(csv.DictReader((out / "manifest.csv").read_text().splitlines()))
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert all(row["sent"].startswith("written, not sent: ") and "cannot connect" in row["sent"] for row in rows)
    assert all((out / row["case_id"] / "cam_pm.dcm").exists() for row in rows)
    assert "2 written but not sent" in capsys.readouterr().out

    server = start_orthanc(tmp_path / "orthanc", http_port=ports[0], dicom_port=ports[1])
    try:
        assert main(argv) == 0  # nothing to explain again; only the sending
        rows = list(csv.DictReader((out / "manifest.csv").read_text().splitlines()))
        assert [row["sent"] for row in rows] == [f"sent to {server.dicomweb}"] * 2
        assert "0 explained, 2 already done" in capsys.readouterr().out
        assert len(server.rest("/instances")) == len(_local_dicom(out))
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["wrong url", "404 series", "auth failure", "not an image series"])
def test_bad_pacs_inputs_get_one_line(orthanc, credentials, tmp_path, capsys, monkeypatch, case):
    study_uid, series_uid = _stow_source(orthanc)
    url = f"{orthanc.dicomweb}/studies/{study_uid}/series/{series_uid}"
    phrase = {"wrong url": "cannot connect (Connection refused)", "404 series": "HTTP 404 not found",
              "auth failure": "HTTP 401 authentication failed", "not an image series": "a SR series, not an image series"}[case]
    if case == "wrong url":
        url = url.replace(str(orthanc.http_port), "9")
    elif case == "404 series":
        url = url.rsplit("/", 1)[0] + "/1.2.3.4.5"
    elif case == "auth failure":
        monkeypatch.setenv("MEDCAM_DICOMWEB_PASSWORD", "wrong")
    else:
        out = tmp_path / "first"
        assert main(["explain", url, "--model", str(MODEL), "--out", str(out), "--formats", "sr", "--send", orthanc.dicomweb]) == 0
        sr = pydicom.dcmread(out / "cam_sr.dcm")
        url = f"{orthanc.dicomweb}/studies/{study_uid}/series/{sr.SeriesInstanceUID}"
        capsys.readouterr()
    assert main(["explain", url, "--model", str(MODEL), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medcam: error: ") and "\n" not in err and phrase in err, err
    assert not (tmp_path / "out").exists()


def test_credentials_on_the_command_line_are_refused(capsys, tmp_path):
    assert main(["explain", "https://user:pw@pacs.example/dicom-web/studies/1.2", "--model", str(MODEL),
                 "--out", str(tmp_path / "o")]) == 2
    assert "credentials in the URL are refused" in capsys.readouterr().err


def test_a_storage_scp_that_refuses_a_sop_class(tmp_path, capsys):
    """A real pynetdicom storage SCP on 127.0.0.1 that takes CT images only: the PM is refused by name,
    the files stay, and the ledger holds nothing that was not stored."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    out = tmp_path / "out"
    assert main(["explain", str(SERIES), "--model", str(MODEL), "--out", str(out), "--formats", "pm"]) == 0
    scp = AE(ae_title="CTONLY")
    scp.add_supported_context(CTImageStorage)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
    try:
        port = server.server_address[1]
        assert main(["send", str(out), "--to", f"dimse://CTONLY@127.0.0.1:{port}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "does not accept Parametric Map Storage objects" in err and "\n" not in err
        assert (out / "cam_pm.dcm").exists() and not (out / ".cam.sent.json").exists()
    finally:
        server.shutdown()
