"""The README's Python example runs as written (from the repository root)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _readme_commands() -> list[str]:
    """The commands of the README's bash blocks that run on the repository alone (the PACS and
    bundle examples name a server and a bundle of the reader's), continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = " ".join(command.split())
            if command.startswith(("medcam ", "python pipelines/")) and "example" not in command and "my_bundle" not in command:
                commands.append(command)
    return commands


@pytest.mark.slow
def test_readme_commands_run_verbatim_from_the_repository_root(tmp_path):
    import shlex

    commands = _readme_commands()
    assert len(commands) >= 5 and any("ct_cohort.csv" in c for c in commands) and any(c.startswith("medcam train") for c in commands)
    for command in commands:
        argv = shlex.split(command.replace(" out/", f" {tmp_path}/out/"))
        runner = [sys.executable, "-m", "medcam.cli"] if argv[0] == "medcam" else [sys.executable]
        done = subprocess.run(runner + argv[1:], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (tmp_path / "out" / "cohort" / "manifest.csv").is_file() and (tmp_path / "out" / "my_model.pt").is_file()
    assert (tmp_path / "out" / "evaluation" / "summary.md").is_file()
