"""PACS in and out: studies fetched over DICOMweb (WADO-RS), outputs sent over DICOMweb (STOW-RS)
or DIMSE (C-STORE), with a ledger so a re-run sends only what is missing.

Needs the ``pacs`` extra (``pip install 'medcam-toolkit[pacs]'``: dicomweb-client, pynetdicom).
"""

from medcam.pacs.send import send_outputs
from medcam.pacs.targets import PacsError, Target, parse_target
from medcam.pacs.wado import fetch

__all__ = ["PacsError", "Target", "fetch", "parse_target", "send_outputs"]
