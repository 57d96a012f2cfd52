"""Every public name of the package says what it does: a docstring on each function, class and
public method of the modules' ``__all__``."""

import ast
from pathlib import Path

import medcam

PACKAGE = Path(medcam.__file__).parent


def _public_without_docstring() -> list[str]:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        exported = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                exported = {item.value for item in node.value.elts if isinstance(item, ast.Constant)} | (exported or set())
            elif isinstance(node, ast.AugAssign) and getattr(node.target, "id", None) == "__all__" and exported is not None:
                exported |= {item.value for item in node.value.elts if isinstance(item, ast.Constant)}
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            if exported is not None and node.name not in exported:
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
            if not ast.get_docstring(node):
                missing.append(where)
            if isinstance(node, ast.ClassDef):
                missing += [f"{where}.{item.name}" for item in node.body
                            if isinstance(item, ast.FunctionDef) and not item.name.startswith("_") and not ast.get_docstring(item)]
    return missing


def test_every_public_function_class_and_method_has_a_docstring():
    assert _public_without_docstring() == []
