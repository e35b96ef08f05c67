"""The layout is the architecture: a module imports only from its own layer or the layers below it.

config/base → data → model → train → inference → eval → pipeline / tools → commands (docs/DEVELOPING.md).
Lazy imports inside functions count too: a back-edge is a back-edge whenever it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lingualift

SRC = Path(lingualift.__file__).parent
LAYERS = [
    {"errors", "io", "paths", "schema", "checkpoint"},
    {"data"},
    {"model"},
    {"train"},
    {"inference"},
    {"eval"},
    {"pipeline", "tools"},
    {"commands", "cli", "__main__", "__init__"},
]

# The one sanctioned edge against the flow, and why.
EXCEPTIONS = {
    ("lingualift.data.lexicon", "lingualift.model.components"): "lexicon induction reads words through the encoder",
}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: not in any layer of tests/test_layout.py; add it to LAYERS and DEVELOPING.md")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lingualift"):
            found |= {node.module} if node.module != "lingualift" else {f"lingualift.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lingualift.")}
    return {name for name in found if name not in ("lingualift.__version__", "lingualift.LinguaLiftError")}


def test_every_import_points_down_the_flow():
    back_edges = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(part for part in relative.parts if part != "__init__" or len(relative.parts) == 2)
        if "resources" in relative.parts:
            continue
        for imported in imports(path):
            if layer_of(imported) > layer_of(module) and (module, imported) not in EXCEPTIONS:
                back_edges.append(f"{module} imports {imported}")
    assert not back_edges, "imports against the flow:\n" + "\n".join(back_edges)
