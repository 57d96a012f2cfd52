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


def _help_commands() -> list[str]:
    """The examples of ``medcam --help`` but the one that names the reader's own study and bundle."""
    from medcam.cli import EXAMPLES

    lines = [re.split(r"\s{2,}", line.strip())[0] for line in EXAMPLES.splitlines()]  # the command, not its description
    return [line for line in lines if line.startswith(("medcam ", "python pipelines/")) and "my_bundle" not in line]


def test_the_help_examples_are_commands_of_this_release():
    from medcam.cli import build_parser

    commands = _help_commands()
    assert len(commands) >= 9 and all(" out/" in c for c in commands if " --out " in c)  # written under out/, run below
    parser = build_parser()
    for command in commands:
        if command.startswith("medcam "):
            import shlex

            parser.parse_args(shlex.split(command)[1:])  # every option exists (argparse exits on one that does not)


def test_the_train_help_states_the_manifest_recipe_it_runs():
    from medcam.cli import build_parser
    from medcam.models.recipes import MANIFEST_RECIPES

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {action.dest: action.help for action in train._actions}
    masks, labels = MANIFEST_RECIPES["masks"], MANIFEST_RECIPES["labels"]
    assert f"manifest: {masks['crop_epochs']:g} with masks" in helps["crop_epochs"]
    assert f"{masks['crop_mm']:g} mm a side" in helps["crop_size"]
    assert f"manifest default: {masks['localisation_weight']:g} with masks" in helps["localisation_weight"]
    assert f"manifest: {masks['epochs']:g} after the crops" in helps["epochs"] and f"{labels['epochs']:g} without masks" in helps["epochs"]


@pytest.mark.slow
def test_readme_and_help_commands_run_verbatim_from_the_repository_root(tmp_path):
    import shlex

    commands = _readme_commands()
    assert len(commands) >= 5 and any("ct_cohort.csv" in c for c in commands) and any(c.startswith("medcam train") for c in commands)
    commands += [c for c in _help_commands() if c not in commands]  # the cohort the help's training reads comes first
    for command in commands:
        argv = shlex.split(command.replace(" out/", f" {tmp_path}/out/"))
        runner = [sys.executable, "-m", "medcam.cli"] if argv[0] == "medcam" else [sys.executable]
        done = subprocess.run(runner + argv[1:], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (tmp_path / "out" / "cohort" / "manifest.csv").is_file() and (tmp_path / "out" / "my_model.pt").is_file()
    assert (tmp_path / "out" / "evaluation" / "summary.md").is_file()
    assert (tmp_path / "out" / "ct3d_quick.pt").is_file() and (tmp_path / "out" / "eval_ct3d" / "figures").is_dir()
    assert (tmp_path / "out" / "demo" / "ct_lesion_dicom").is_dir()
