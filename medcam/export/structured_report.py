"""An AI-result Structured Report of one explanation (TID 1500 Measurement Report in a
Comprehensive 3D SR, built with highdicom).

What it says: the algorithm (medcam, its version, the CAM method and layer, the model's name
and SHA-256) as the observing device and as the algorithm of the measurement group; the
explained class (a qualitative evaluation) and its probability (a measurement); where the map
peaks, as a 3D point in the source's frame of reference; and, as evidence, the source series
and the Parametric Map and SEG written beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medcam import __version__
from medcam.errors import ExportError
from medcam.export.atomic import atomic_output
from medcam.export.identity import SERIES_NUMBERS, UidFactory

__all__ = ["write_structured_report"]

#: Codes of medcam's own classes: a private scheme, code value = class index.
_CLASS_SCHEME = "99MEDCAM"


def _procedure(modality: str) -> Code:
    return codes.LN.CTUnspecifiedBodyRegion if modality == "CT" else codes.SCT.ImagingProcedure


def write_structured_report(
    explanation,
    path: str | Path,
    *,
    uids: UidFactory | None = None,
    referenced_objects: Sequence[str | Path] = (),
    series_number: int = SERIES_NUMBERS["sr"],
    overwrite: bool = False,
) -> Path:
    """Write the SR of ``explanation`` (a DICOM study), referencing ``referenced_objects`` (the
    Parametric Map and SEG files written for it) as evidence beside the source images.

    Raises
    ------
    ExportError
        The study is not DICOM, or has no frame of reference to place the peak in.
    """
    import highdicom as hd
    import pydicom

    series = explanation.study.series
    if series is None:
        raise ExportError("Structured Report: the source is not DICOM")
    source = series.datasets[0]
    if "FrameOfReferenceUID" not in source:
        raise ExportError("Structured Report: the source has no FrameOfReferenceUID, so the map's peak cannot be placed in it")
    uids = uids or UidFactory()
    provenance = explanation.model.provenance
    sha = explanation.model.weights_sha256()
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"medcam {explanation.method}"[:64], version=__version__,
        parameters=[f"model {provenance.name}"[:64], f"model sha256 {sha}"[:64], f"layer {explanation.layer}"[:64],
                    f"target class {explanation.target}"],
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.uid("sr-device"), name="medcam", manufacturer_name="medcam", model_name=f"{provenance.name}"[:64],
            serial_number=sha[:16],
        ),
    )
    peak = hd.sr.CoordinatesForMeasurement3D(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.asarray([explanation.peak_lps], dtype=float),  # DICOM patient coordinates (LPS mm)
        frame_of_reference_uid=str(source.FrameOfReferenceUID),
    )
    probability = hd.sr.Measurement(
        name=codes.DCM.Probability, value=float(explanation.probability), unit=Code("1", "UCUM", "no units"),
        algorithm_id=algorithm, referenced_coordinates=[peak],
    )
    finding = Code(str(explanation.target), _CLASS_SCHEME, explanation.target_name[:64])
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.uid("sr-tracking"), identifier=f"medcam {explanation.method}"[:64]),
        algorithm_id=algorithm,
        measurements=[probability],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes.DCM.Finding, value=finding)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_procedure(str(source.get("Modality", ""))),
        imaging_measurements=[group],
    )
    evidence = list(series.datasets) + [pydicom.dcmread(p, stop_before_pixels=True) for p in referenced_objects]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=uids.uid("sr-series"), series_number=series_number,
        sop_instance_uid=uids.uid("sr-instance"), instance_number=1, manufacturer="medcam", is_complete=True,
    )
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as temporary:
        sr.save_as(temporary, enforce_file_format=True)
    return path
