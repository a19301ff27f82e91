"""rarl's import graph: no cycles, and every dependency points down the declared layers.

The graph is read from the source with ``ast`` (module-level, function-level and ``TYPE_CHECKING``
imports alike), not from the code's own notion of its layers, and is compared with the table below: the
table is the architecture (docs/architecture.md draws it); a new import that breaks it fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "rarl"

# Which top-level unit of rarl may import which (besides itself and the bare ``rarl`` package, which only
# holds ``__version__``). Bottom to top. ``commands`` and ``cli`` sit on top and may import anything.
BASE = {"rarl.errors", "rarl.io"}  # rarl.compat (private library names) is base too, importing nothing
MAY_IMPORT: dict[str, set[str]] = {
    "rarl.errors": set(),
    "rarl.io": {"rarl.errors"},
    "rarl.compat": set(),
    "rarl.schema": BASE,
    "rarl.answers": BASE,
    "rarl.metrics": BASE,
    "rarl.stats": BASE,
    "rarl.prompts": BASE,
    "rarl.trl_schema": BASE,
    "rarl.devices": BASE,
    "rarl.bertscore": BASE | {"rarl.devices"},
    "rarl.config": BASE | {"rarl.schema", "rarl.trl_schema"},
    "rarl.libconfig": BASE | {"rarl.config", "rarl.trl_schema", "rarl.devices"},
    "rarl.models": BASE | {"rarl.config", "rarl.libconfig", "rarl.prompts", "rarl.devices", "rarl.compat"},
    "rarl.data": BASE
    | {
        "rarl.schema",
        "rarl.config",
        "rarl.answers",
        "rarl.models",
        "rarl.prompts",
        "rarl.stats",
    },
    # one module per benchmark (loaders, typing, reference rules, scorers): above the data layer's generic
    # helpers, below the pipelines; the rewards read its reference rules
    "rarl.tasks": BASE
    | {"rarl.metrics", "rarl.answers", "rarl.schema", "rarl.stats", "rarl.config", "rarl.data"},
    "rarl.rewards": BASE | {"rarl.answers", "rarl.bertscore", "rarl.tasks"},
    "rarl.provenance": BASE | {"rarl.schema", "rarl.config", "rarl.models"},
    "rarl.train": BASE
    | {
        "rarl.compat",
        "rarl.devices",
        "rarl.bertscore",
        "rarl.schema",
        "rarl.config",
        "rarl.trl_schema",
        "rarl.libconfig",
        "rarl.data",
        "rarl.models",
        "rarl.prompts",
        "rarl.provenance",
        "rarl.rewards",
        "rarl.answers",
        "rarl.stats",
        "rarl.tasks",
    },
    "rarl.eval": BASE
    | {
        "rarl.compat",
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
    "rarl.export": BASE | {"rarl.schema", "rarl.config", "rarl.models", "rarl.stats"},
    "rarl.report": BASE | {"rarl.schema", "rarl.stats", "rarl.eval", "rarl.review", "rarl.tasks"},
    "rarl.bench": BASE
    | {
        "rarl.compat",
        "rarl.config",
        "rarl.libconfig",
        "rarl.data",
        "rarl.models",
        "rarl.rewards",
        "rarl.bertscore",
        "rarl.train",
    },
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
        "rarl.report",
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
    assert "rarl.eval.harness" in graph["rarl.demo"]  # imported inside a function
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
    assert "rarl.tasks" not in units["rarl.data"], "data (generic helpers) must not import the benchmarks"
    assert "rarl.review" not in units["rarl.eval"], "eval must not import review"
    assert "rarl.eval" not in units["rarl.review"], "review must not import eval"
    assert "rarl.eval" not in units["rarl.train"], "train must not import eval"
    assert "rarl.train" not in units["rarl.eval"], "eval reads checkpoints through the schema, not train"
    assert "rarl.report" not in units["rarl.eval"], "eval must not import report"
    below_schema = units["rarl.schema"]
    assert below_schema <= {"rarl.errors", "rarl.io"}, "the schema imports nothing above errors/io"


# --------------------------------------------------------------------------------------------------
# private names of the libraries: only rarl/compat.py touches them

LIBRARIES = ("transformers", "trl", "peft", "openai", "accelerate")
TESTS_ROOT = Path(__file__).resolve().parent
PRIVATE_MODULE = PACKAGE_ROOT / "compat.py"
PRIVATE_TESTS = TESTS_ROOT / "test_compat.py"


STR_METHODS = {"endswith", "startswith", "removesuffix", "removeprefix", "replace", "split", "rsplit"}


def _text_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr in STR_METHODS) or (
        isinstance(func, ast.Name) and func.id == "len"
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def _own_names(trees: list[ast.AST]) -> set[str]:
    """Every underscore name rarl or its tests define (functions, classes, attributes they assign,
    parameters, keyword names, dict keys): touching those is rarl's own business."""
    own: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
                own.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if not (isinstance(node.value, ast.Attribute) and node.value.attr == "config"):
                    own.add(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    own.add(node.slice.value)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rarl"):
                own.update(alias.asname or alias.name for alias in node.names)
    return own


def private_library_touches(files: list[Path]) -> list[str]:
    """``path:line: name`` for every touch of a private library name outside rarl/compat.py: an attribute
    rarl does not define (``trainer._generate``), the same as a string (``getattr(x, "_generate")``), or a
    private module of a library (``openai._base_client``), imported or named."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}
    own = _own_names(list(trees.values()))
    library_private = re.compile(rf"^({'|'.join(LIBRARIES)})(\.\w+)*\._\w+")
    found = []
    for path, tree in trees.items():
        if path in (PRIVATE_MODULE, PRIVATE_TESTS, Path(__file__).resolve()):  # this file: the probe below
            continue
        # a fragment of text, not a name: f-string parts, ``endswith("_ci")``, ``len("_ci")``
        strings = [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
        text_only = {id(part) for node in strings for part in node.values}
        text_only |= {id(arg) for node in ast.walk(tree) if _text_call(node) for arg in node.args}
        for node in ast.walk(tree):
            if id(node) in text_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
                names = [node.attr]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                # getattr(trainer, "_generate"), import_module("openai._base_client")
                foreign = text.isidentifier() and _private(text) and text not in own
                if library_private.match(text) or foreign:
                    names = [text]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if library_private.match(a.name)]
            elif isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                names = [module] if library_private.match(module) else []
                if module.split(".")[0] in LIBRARIES:
                    names += [f"{module}.{a.name}" for a in node.names if _private(a.name)]
            inside = path.is_relative_to(PACKAGE_ROOT.parent)
            where = path.relative_to(PACKAGE_ROOT.parent) if inside else path
            found += [f"{where}:{node.lineno}: {name}" for name in names]
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py")) + sorted(TESTS_ROOT.rglob("*.py"))


def test_private_library_names_are_touched_only_in_compat():
    assert private_library_touches(_sources()) == []


def test_the_private_name_scanner_sees_each_kind_of_touch(tmp_path):
    """The oracle itself: each way of reaching a private name is seen, and rarl's own are not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib\n"
        "from openai._base_client import httpx2\n"
        "import trl._compat\n"
        "base = importlib.import_module('openai._base_client')\n"
        "trainer._generate_and_score_completions(batch)\n"
        "setattr(trainer, '_calculate_rewards', f)\n"
        "self._mine = 1\n"
        "print(obj._mine)\n",
        encoding="utf-8",
    )
    found = [line.split(": ", 1)[1] for line in private_library_touches([probe])]
    assert sorted(found) == [
        "_calculate_rewards",
        "_generate_and_score_completions",
        "openai._base_client",
        "openai._base_client",
        "trl._compat",
    ]
