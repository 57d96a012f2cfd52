"""The case-review notebook runs headless, top to bottom, on the bundled sample data."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_case_review_notebook_executes(tmp_path):
    notebook = nbformat.read(ROOT / "notebooks" / "case_review.ipynb", as_version=4)
    os.environ["MEDCAM_SAMPLE_DATA"] = str(ROOT / "sample_data")
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("MEDCAM_SAMPLE_DATA", None)
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert "prediction: lesion" in text
    assert "peak inside the lesion mask:" in text and "distance" in text
    assert "hirescam" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2
