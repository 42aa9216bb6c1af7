"""The README's layer table ("How the code is laid out") holds against the code: every madloop module sits in
one layer, no module imports one from a layer above its own, and no two madloop modules import each other
round a circle. Imports are read with ``ast``, at the top of a file and inside functions alike (an import
inside a function is an import all the same; it only runs later).

In the table a backticked name outside parentheses is a module (``rng``) or a package (``models/``: every module
in it); backticked text inside parentheses is prose. The package itself (``madloop/__init__.py``) is ``madloop``.
Importing ``a.b.c`` counts as importing ``a.b.c`` only, not its parent packages (as import-linter reads it).
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "madloop"
README = ROOT / "README.md"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package's ``__init__`` by the package's name)."""
    found = {}
    for file in sorted(package.rglob("*.py")):
        parts = file.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(name: str, file: Path, known: dict[str, Path]) -> dict[str, int]:
    """The madloop modules that module ``name`` imports, each with the line of its first import."""
    found: dict[str, int] = {}
    package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                else node.module
            # ``from a import b``: the module a.b where there is one, else a name from module a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "madloop" or target.startswith("madloop."):
                found.setdefault(target, node.lineno)
    return found


def layer_table(text: str) -> list[tuple[str, list[str]]]:
    """The README's layer table, bottom up: (layer, the module and package names placed in it)."""
    section = text.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| *([^|`]+?) *\| *(.+?) *\|$", section, flags=re.M)
    layers = []
    for layer, cell in rows:
        if layer in ("layer", "---"):
            continue
        names, depth = [], 0
        for token in re.findall(r"`[^`]*`|[()]", cell):
            if token in "()":
                depth += 1 if token == "(" else -1
            elif depth == 0:
                names.append(token.strip("`"))
        layers.append((layer, names))
    return layers


def placement(layers: list[tuple[str, list[str]]], known: dict[str, Path]) -> dict[str, int]:
    """Each module's layer index (0 the ground floor); a package's name places every module in it."""
    level: dict[str, int] = {}
    for index, (_, names) in enumerate(layers):
        for entry in names:
            dotted = "madloop" if entry == "madloop" else "madloop." + entry.rstrip("/").replace("/", ".")
            inside = [m for m in known if m == dotted or (entry.endswith("/") and m.startswith(dotted + "."))]
            assert inside, f"the README's layer table names `{entry}`, which is no madloop module or package"
            for module in inside:
                level.setdefault(module, index)
    return level


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def graph_of(known: dict[str, Path]) -> dict[str, dict[str, int]]:
    return {name: imports(name, file, known) for name, file in known.items()}


def upward(known: dict[str, Path], layers: list[tuple[str, list[str]]]) -> list[str]:
    """Each import of a module from a layer above the importer's, as one line."""
    level = placement(layers, known)
    return [f"{importer} ({layers[level[importer]][0]}) imports {target} ({layers[level[target]][0]}) at line {line}"
            for importer, targets in graph_of(known).items() for target, line in targets.items()
            if importer in level and target in level and level[target] > level[importer]]


def test_every_module_has_a_row_in_the_readme_layer_table():
    known = modules()
    level = placement(layer_table(README.read_text()), known)
    missing = sorted(set(known) - set(level))
    assert not missing, f"modules missing from the README's layer table (place each in its row): {missing}"


def test_no_module_imports_one_from_a_layer_above_its_own():
    bad = upward(modules(), layer_table(README.read_text()))
    assert not bad, "imports up the README's layers:\n" + "\n".join(bad)


def test_no_import_circles_among_madloop_modules():
    graph = {name: set(targets) for name, targets in graph_of(modules()).items()}
    assert not cycles(graph), f"import circles: {cycles(graph)}"


def test_the_checks_see_what_they_check(tmp_path):
    """Each check fails on a package built to break it: an import up a layer inside a function, a circle through
    a relative import, a module without a row, a row naming no module."""
    package = tmp_path / "madloop"
    (package / "sub").mkdir(parents=True)
    files = {"__init__.py": "", "low.py": "def f():\n    from madloop import high\n", "high.py": "import madloop.low\n",
             "sub/__init__.py": "", "sub/a.py": "from . import b\n", "sub/b.py": "from .a import f\n",
             "stray.py": ""}
    for name, text in files.items():
        (package / name).write_text(text)
    known = modules(package)
    layers = layer_table("## How the code is laid out\n| layer | modules |\n|---|---|\n"
                         "| ground | `low` (prose: `high`), `sub/` |\n| top | `high`, `madloop` |\n\n## Next\n")
    assert layers == [("ground", ["low", "sub/"]), ("top", ["high", "madloop"])]
    assert upward(known, layers) == ["madloop.low (ground) imports madloop.high (top) at line 2"]
    graph = {name: set(targets) for name, targets in graph_of(known).items()}
    assert cycles(graph) == [["madloop.high", "madloop.low"], ["madloop.sub.a", "madloop.sub.b"]]
    assert set(known) - set(placement(layers, known)) == {"madloop.stray"}
    with pytest.raises(AssertionError, match="names `gone`"):
        placement([("ground", ["gone"])], known)
