"""rarl's import graph: no cycles, and every dependency points down the declared layers.

The graph is read from the source with ``ast`` (module-level, function-level and ``TYPE_CHECKING``
imports alike), not from the code's own notion of its layers, and is compared with the table below: the
table is the architecture (docs/architecture.md draws it); a new import that breaks it fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "rarl"

# Which top-level unit of rarl may import which (besides itself and the bare ``rarl`` package, which only
# holds ``__version__``). Bottom to top. ``commands`` and ``cli`` sit on top and may import anything.
BASE = {"rarl.errors", "rarl.io"}
MAY_IMPORT: dict[str, set[str]] = {
    "rarl.errors": set(),
    "rarl.io": {"rarl.errors"},
    "rarl.schema": BASE,
    "rarl.answers": BASE,
    "rarl.metrics": BASE,
    "rarl.tasks": BASE | {"rarl.metrics", "rarl.answers", "rarl.schema", "rarl.stats"},
    "rarl.stats": BASE,
    "rarl.prompts": BASE,
    "rarl.trl_schema": BASE,
    "rarl.devices": BASE,
    "rarl.bertscore": BASE | {"rarl.devices"},
    "rarl.config": BASE | {"rarl.schema", "rarl.trl_schema"},
    "rarl.rewards": BASE | {"rarl.answers", "rarl.bertscore", "rarl.tasks"},
    "rarl.models": BASE | {"rarl.config", "rarl.prompts", "rarl.devices"},
    "rarl.data": BASE
    | {
        "rarl.schema",
        "rarl.config",
        "rarl.answers",
        "rarl.models",
        "rarl.prompts",
        "rarl.stats",
        "rarl.tasks",
    },
    "rarl.provenance": BASE | {"rarl.schema", "rarl.config", "rarl.models"},
    "rarl.train": BASE
    | {
        "rarl.schema",
        "rarl.config",
        "rarl.trl_schema",
        "rarl.data",
        "rarl.models",
        "rarl.prompts",
        "rarl.provenance",
        "rarl.rewards",
        "rarl.answers",
        "rarl.stats",
    },
    "rarl.eval": BASE
    | {
        "rarl.schema",
        "rarl.config",
        "rarl.data",
        "rarl.models",
        "rarl.prompts",
        "rarl.provenance",
        "rarl.answers",
        "rarl.bertscore",
        "rarl.stats",
        "rarl.metrics",
        "rarl.tasks",
    },
    "rarl.review": BASE | {"rarl.schema", "rarl.data"},
    "rarl.report": BASE | {"rarl.schema", "rarl.stats", "rarl.eval", "rarl.review"},
    "rarl.bench": BASE
    | {"rarl.config", "rarl.data", "rarl.models", "rarl.rewards", "rarl.bertscore", "rarl.train"},
    "rarl.demo": BASE
    | {
        "rarl.schema",
        "rarl.config",
        "rarl.data",
        "rarl.models",
        "rarl.prompts",
        "rarl.answers",
        "rarl.stats",
        "rarl.train",
        "rarl.eval",
    },
}
ON_TOP = {"rarl.commands", "rarl.cli", "rarl.__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest existing module prefix of an imported dotted name (``rarl.schema.sample.Sample`` →
    ``rarl.schema.sample``)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module → the rarl modules it imports anywhere in its source (every ``import`` node in the tree)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from rarl import prompts`` imports the module rarl.prompts, not just the package
                names = [f"{stem}.{alias.name}" for alias in node.names]
            for name in names:
                if name == "rarl" or name.startswith("rarl."):
                    target = _resolve(name, modules)
                    if target and target != module:
                        targets.add(target)
        graph[module] = targets
    return graph


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(_unit(module), set()).update(
            _unit(t) for t in targets if _unit(t) != _unit(module) and t != "rarl"
        )
    return units


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    """The oracle itself: it must see imports hidden inside functions, or the other tests prove nothing."""
    graph = import_graph()
    assert "rarl.eval.generate" in graph["rarl.demo"]  # imported inside a function
    assert "rarl.prompts" in graph["rarl.models.tiny"]  # ``from rarl import prompts`` inside a function
    assert "rarl.models.tiny" in graph["rarl.models"]  # the package __init__ re-exports it
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    assert _cycles(import_graph()) == []


def test_no_import_cycle_between_packages():
    assert _cycles(_unit_graph(import_graph())) == []


def test_every_package_imports_only_what_its_layer_allows():
    units = _unit_graph(import_graph())
    assert set(units) - ON_TOP - {"rarl"} == set(MAY_IMPORT), "a new package needs a row in MAY_IMPORT"
    violations = [
        f"{unit} imports {target}"
        for unit, targets in sorted(units.items())
        if unit in MAY_IMPORT
        for target in sorted(targets - MAY_IMPORT[unit])
    ]
    assert violations == []


def test_the_named_rules_of_the_redesign_hold():
    """The rules issue 12 states in words, checked one by one so a failure names the broken rule."""
    units = _unit_graph(import_graph())
    assert "rarl.data" not in units["rarl.config"], "config must not import data"
    assert "rarl.review" not in units["rarl.eval"], "eval must not import review"
    assert "rarl.eval" not in units["rarl.review"], "review must not import eval"
    assert "rarl.eval" not in units["rarl.train"], "train must not import eval"
    assert "rarl.train" not in units["rarl.eval"], "eval reads checkpoints through the schema, not train"
    assert "rarl.report" not in units["rarl.eval"], "eval must not import report"
    below_schema = units["rarl.schema"]
    assert below_schema <= {"rarl.errors", "rarl.io"}, "the schema imports nothing above errors/io"
