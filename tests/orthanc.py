"""A real Orthanc PACS for the tests: loopback-only ports, temporary storage, its DICOMweb plugin,
HTTP basic authentication, any calling AE title allowed to store. Started as a process, polled on
``/system`` until it answers, stopped at the end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

USER, PASSWORD = "medcam", "s3cret-pw"
_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins")


def _free_ports(count: int) -> list[int]:
    """``count`` different free ports (the probes are held together, so no two are the same)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None)


def dicomweb_plugin() -> str | None:
    for folder in _PLUGIN_DIRS:
        path = Path(folder) / "libOrthancDicomWeb.so"
        if path.exists():
            return str(path)
    return None


@dataclass
class Orthanc:
    process: subprocess.Popen
    http_port: int
    dicom_port: int
    aet: str = "ORTHANC"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    def rest(self, path: str, **kwargs):
        response = requests.get(f"{self.url}{path}", auth=(USER, PASSWORD), timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_orthanc(folder: Path, *, http_port: int | None = None, dicom_port: int | None = None) -> Orthanc:
    """Orthanc with its storage in ``folder``; given the ports of a stopped one, the same server again."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None or plugin is None:
        raise FileNotFoundError("Orthanc and its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb)")
    folder.mkdir(parents=True, exist_ok=True)
    free = _free_ports(2)
    http_port, dicom_port = http_port or free[0], dicom_port or free[1]
    config = {
        "Name": "medcam-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,  # HTTP answers loopback only (Orthanc 1.10 binds DICOM to every address)
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
        "HttpsVerifyPeers": True, "StableAge": 1, "ConcurrentJobs": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    with open(folder / "orthanc.log", "a") as log:  # the server holds its own copy of the descriptor
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(process, http_port, dicom_port)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.rest("/system")
            return server
        except requests.RequestException:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"Orthanc did not answer on {server.url} within 60 s") from None
            time.sleep(0.2)
