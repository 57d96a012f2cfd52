"""The README's Python example runs as written (from the repository root)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*From Python\*\*:\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(block.replace('"out/"', repr(str(tmp_path / "out"))), "README.md", "exec"), namespace)
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert written == ["gradcam.json", "gradcam.nii.gz", "gradcam_pm.dcm", "gradcam_sc"]
    assert namespace["explanation"].heatmap.shape == namespace["study"].volume.shape
