"""One error hierarchy: what medcam raises on purpose is a MedcamError (and the builtin it stands for)."""

import ast
import inspect
from pathlib import Path

import medcam.errors as errors

PACKAGE = Path(errors.__file__).parent
BUILTINS = {"ValueError", "TypeError", "RuntimeError", "KeyError", "OSError", "Exception", "AssertionError"}
#: raise sites that must raise the builtin: a protocol asks for it
PROTOCOL = {("export/nifti.py", "TypeError")}  # json.dumps(default=...) must raise TypeError


def test_every_error_class_is_a_medcam_error_and_a_builtin():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception) and not issubclass(c, Warning) and c is not errors.MedcamError]
    assert len(classes) >= 12
    for cls in classes:
        assert issubclass(cls, errors.MedcamError) and cls.__module__ == "medcam.errors"
        assert any(base in cls.__mro__ for base in (ValueError, TypeError, RuntimeError)), cls


def test_medcam_raises_no_bare_builtin_error():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                name, where = node.exc.func.id, str(path.relative_to(PACKAGE))
                if name in BUILTINS and (where, name) not in PROTOCOL:
                    found.append(f"{where}:{node.lineno} raise {name}")
            if isinstance(node, ast.ClassDef) and path.name != "errors.py":
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & {"MedcamError", "ValueError", "RuntimeError"} or "Warning" in node.name, \
                    f"{path.name}: error class {node.name} outside medcam/errors.py"
    assert not found, found
