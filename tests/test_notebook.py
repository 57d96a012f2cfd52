"""The case-review notebook runs headless, top to bottom, on the bundled sample data, and shows
what a reader needs: the prediction, the peak on the lesion (a check that prints False fails
here), every method with its localisation numbers, static slice images, and the DICOM outputs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

#: Executes a notebook (argv 1) with a fresh kernel in the folder argv 3 and writes it with its outputs to argv 2.
EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(notebook, sys.argv[2])
"""


def test_case_review_notebook_executes_and_shows_the_case(tmp_path):
    # in a process of its own, as a reader's Jupyter runs it: run inside the test session's process
    # (beside the event loops and clients of earlier tests), the client sat idle beside an idle kernel
    # for about ten minutes in some full runs (never when the test ran alone), then went on
    executed = tmp_path / "executed.ipynb"
    env = {**{k: v for k, v in os.environ.items() if k != "MEDCAM_OUTPUT"}, "MEDCAM_SAMPLE_DATA": str(ROOT / "sample_data")}
    run = subprocess.run([sys.executable, "-c", EXECUTE, str(ROOT / "notebooks" / "case_review.ipynb"), str(executed), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    notebook = nbformat.read(executed, as_version=4)
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert "prediction: lesion" in text and re.search(r"map of class 'lesion', probability 0\.\d{3}", text)
    assert "peak inside the lesion mask: True" in text, text
    distance = float(re.search(r"nearest lesion centre: ([\d.]+) mm", text).group(1))
    assert distance <= 10.0
    energy = float(re.search(r"share of the positive map inside the mask: ([\d.]+)", text).group(1))
    assert 0.0 < energy <= 1.0
    table = {line.split()[0]: line.split() for line in text.splitlines()
             if line.split() and line.split()[0] in ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam")}
    assert set(table) == {"cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam"}, text
    assert table["cam"][1] == "True" and table["gradcam"][1] == "True"  # the GAP model's CAM hits
    assert "static slices shown: 5" in text
    for fmt in ("nifti", "pm", "sc", "seg", "sr", "png"):
        assert re.search(rf"^{fmt}\s+\S", text, re.M), fmt
    written = tmp_path / "case_review_out" / "ct_lesion"  # in the folder the notebook ran in, not a temporary one left behind
    assert (written / "cam_pm.dcm").is_file() and (written / "cam_sr.dcm").is_file() and len(list((written / "cam_sc").iterdir())) > 1
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # tri-planar, slice montage, methods side by side
