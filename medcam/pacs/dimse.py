"""C-STORE: DICOM objects sent to a DIMSE storage SCP (a PACS's DICOM port) through pynetdicom."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pydicom

from medcam.pacs.targets import PacsError, Target, check_calling_aet

_SUCCESS_OR_WARNING = {0x0000, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}


def c_store(target: Target, datasets: Sequence[pydicom.Dataset], acknowledge: Callable[[list[str]], None], *,
            calling_aet: str = "MEDCAM", timeout: float = 30.0) -> None:
    """Store ``datasets`` on ``target`` over one association; each stored instance is acknowledged.
    Raises PacsError when the association fails or the SCP refuses an instance (its status named)."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=check_calling_aet(calling_aet))
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    contexts: dict[str, set[str]] = {}
    for ds in datasets:
        contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    if len(contexts) > 128:
        raise PacsError(f"{target}: {len(contexts)} SOP classes in one association; at most 128")
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}))
    where = f"{target}"
    assoc = ae.associate(target.host, target.port, ae_title=target.called_aet)
    if not assoc.is_established:
        refused = [getattr(context.abstract_syntax, "name", str(context.abstract_syntax)) for context in assoc.rejected_contexts]
        if refused and not assoc.accepted_contexts:
            raise PacsError(f"{where}: the server does not accept {', '.join(refused)} objects (no presentation context)")
        state = "rejected the association" if assoc.is_rejected else "cannot be reached (no association)"
        raise PacsError(f"{where}: {state}; check the host, port and AE titles (calling {calling_aet})")
    try:
        accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
        for ds in datasets:
            if str(ds.SOPClassUID) not in accepted:
                raise PacsError(f"{where}: the server does not accept {ds.SOPClassUID.name} objects (no presentation context)")
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in _SUCCESS_OR_WARNING:
                reason = "no answer" if code < 0 else f"status 0x{code:04X}"
                raise PacsError(f"{where}: the server refused {ds.SOPClassUID.name} {ds.SOPInstanceUID} ({reason})")
            acknowledge([str(ds.SOPInstanceUID)])
    finally:
        if assoc.is_established:
            assoc.release()
