"""Where a study comes from or outputs go: a DICOMweb URL or ``dimse://AET@host:port``, and the
credentials for it, which come from the environment or a config file, never from the command line.

DICOMweb credentials, the first found:

- ``MEDCAM_DICOMWEB_TOKEN``: a bearer token;
- ``MEDCAM_DICOMWEB_USER`` and ``MEDCAM_DICOMWEB_PASSWORD``: HTTP basic authentication;
- the config file ``MEDCAM_PACS_CONFIG`` (default ``~/.config/medcam/pacs.json``): an object whose
  keys are URL prefixes and whose values hold ``token`` or ``user`` and ``password``, and optionally
  ``ca_bundle``; the longest matching prefix wins.

TLS certificates are verified (against ``MEDCAM_DICOMWEB_CA_BUNDLE`` or the config's ``ca_bundle``
when given, else the system's store).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from medcam.errors import PacsError

__all__ = ["PacsError", "Target", "parse_target", "is_dicomweb_url", "dicomweb_session"]


@dataclass(frozen=True)
class Target:
    """A parsed destination: ``kind`` "dicomweb" (``url``) or "dimse" (``called_aet``, ``host``, ``port``)."""

    kind: str
    url: str = ""
    called_aet: str = ""
    host: str = ""
    port: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.url if self.kind == "dicomweb" else f"dimse://{self.called_aet}@{self.host}:{self.port}"


_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: 16 characters, no backslash or control characters


def is_dicomweb_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL (a DICOMweb service)."""
    return str(text).lower().startswith(("http://", "https://"))


def _refuse_inline_credentials(url: str) -> None:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise PacsError(f"{parts.scheme}://{parts.hostname}...: credentials in the URL are refused (they would show in the "
                        "process list and the shell history); set MEDCAM_DICOMWEB_USER and MEDCAM_DICOMWEB_PASSWORD, "
                        "MEDCAM_DICOMWEB_TOKEN, or the MEDCAM_PACS_CONFIG file")


def parse_target(text: str) -> Target:
    """``https://host/dicom-web`` (STOW-RS) or ``dimse://AET@host:port`` (C-STORE)."""
    text = str(text).strip()
    if is_dicomweb_url(text):
        _refuse_inline_credentials(text)
        if not urlsplit(text).hostname:
            raise PacsError(f"{text}: not a DICOMweb URL (no host)")
        return Target("dicomweb", url=text.rstrip("/"))
    match = re.fullmatch(r"dimse://([^@]+)@([^:/@]+):(\d+)/?", text)
    if match is None:
        raise PacsError(f"{text}: expected a DICOMweb URL (https://host/dicom-web) or dimse://AET@host:port")
    aet, host, port = match.group(1), match.group(2), int(match.group(3))
    if not _AET.fullmatch(aet) or not aet.strip():
        raise PacsError(f"{text}: the called AE title {aet!r} is not 1-16 printable characters")
    if not 0 < port < 65536:
        raise PacsError(f"{text}: port {port} is not between 1 and 65535")
    return Target("dimse", called_aet=aet, host=host, port=port)


def check_calling_aet(aet: str) -> str:
    if not _AET.fullmatch(aet) or not aet.strip():
        raise PacsError(f"calling AE title {aet!r}: expected 1-16 printable characters without a backslash")
    return aet


def _config_entry(url: str) -> dict:
    path = Path(os.environ.get("MEDCAM_PACS_CONFIG") or Path.home() / ".config" / "medcam" / "pacs.json")
    if not path.is_file():
        if os.environ.get("MEDCAM_PACS_CONFIG"):
            raise PacsError(f"{path}: MEDCAM_PACS_CONFIG names no such file")
        return {}
    from medcam.io.tables import read_json_object

    config = read_json_object(path, PacsError, f"{path} (MEDCAM_PACS_CONFIG)")
    matches = [prefix for prefix in config if isinstance(prefix, str) and url.startswith(prefix.rstrip("/"))]
    entry = config[max(matches, key=len)] if matches else {}
    if not isinstance(entry, dict):
        raise PacsError(f"{path}: the entry for {max(matches, key=len)} is not an object")
    return entry


def dicomweb_session(url: str):
    """A ``requests.Session`` for ``url`` with its credentials and certificate verification."""
    import requests

    entry = _config_entry(url)
    session = requests.Session()
    token = os.environ.get("MEDCAM_DICOMWEB_TOKEN") or entry.get("token")
    user = os.environ.get("MEDCAM_DICOMWEB_USER") or entry.get("user")
    password = os.environ.get("MEDCAM_DICOMWEB_PASSWORD") or entry.get("password")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user:
        session.auth = (str(user), str(password or ""))
    ca_bundle = os.environ.get("MEDCAM_DICOMWEB_CA_BUNDLE") or entry.get("ca_bundle")
    session.verify = str(ca_bundle) if ca_bundle else True
    return session


def http_reason(exc: Exception, url: str) -> str:
    """One line for a failed HTTP call: what the server said, or why it could not be reached."""
    import requests

    response = getattr(exc, "response", None)
    if response is not None:
        status = response.status_code
        meaning = {401: "authentication failed (check MEDCAM_DICOMWEB_USER/PASSWORD or TOKEN)", 403: "access refused",
                   404: "not found on the server", 409: "the server refused some instances"}.get(status, response.reason or "")
        return f"{url}: HTTP {status} {meaning}".rstrip()
    if isinstance(exc, requests.exceptions.SSLError):
        return f"{url}: the TLS certificate could not be verified ({_first_line(exc)}); set MEDCAM_DICOMWEB_CA_BUNDLE"
    if isinstance(exc, requests.exceptions.ConnectionError):
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        return f"{url}: cannot connect ({errno.group(1).strip() if errno else _first_line(exc)})"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{url}: no answer in time"
    return f"{url}: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
