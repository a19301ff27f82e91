"""The task registry: one module per benchmark under ``rarl/tasks/``, one line per benchmark in SOURCES.

The oracles are the file system and the source text (which modules exist, which functions each defines),
read independently of the registry code, and a toy benchmark written here as one file plus one line.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import replace
from importlib import import_module
from pathlib import Path

import pytest

import rarl.tasks
import rarl.tasks.loading
from rarl.config import DatasetSpec
from rarl.data.synthetic import generate_samples, write_reasoning_jsonl
from rarl.schema.sources import SOURCES, SourceInfo
from rarl.tasks import TASKS, build_tasks, hub_datasets

PACKAGE = Path(__file__).resolve().parents[1] / "rarl"
FIXTURES = Path(__file__).parent / "fixtures" / "data"
NOT_TASKS = {"__init__", "base", "loading"}  # the registry, the Task shape, the dispatch
MODULES = {info.name: info.module for info in SOURCES if info.module}


def test_every_registered_module_is_a_task_with_a_loader_and_every_task_module_is_registered():
    on_disk = {path.stem for path in (PACKAGE / "tasks").glob("*.py")} - NOT_TASKS
    assert set(MODULES.values()) == on_disk, "a task module needs its SourceInfo line (and back)"
    assert set(TASKS) == set(MODULES)
    for name, module in MODULES.items():
        task = TASKS[name]
        assert task is import_module(f"rarl.tasks.{module}").TASK
        assert task.name == name, f"rarl/tasks/{module}.py: TASK is named {task.name!r}, its line {name!r}"
        assert callable(task.load), f"rarl/tasks/{module}.py: TASK has no loader"


def test_every_registered_loader_loads_through_the_dispatch(tmp_path):
    write_reasoning_jsonl(generate_samples(4, seed=0, split="train"), tmp_path)
    specs = {
        "synthetic": DatasetSpec(source="synthetic", num_samples=3, split="test"),
        "reasoning_jsonl": DatasetSpec(source="reasoning_jsonl", path=str(tmp_path), split="train"),
        "vqa_rad": DatasetSpec(source="vqa_rad", path=str(FIXTURES / "vqa_rad"), split="test"),
        "slake": DatasetSpec(source="slake", path=str(FIXTURES / "slake"), split="train"),
        "vqa_med_2019": DatasetSpec(source="vqa_med_2019", path=str(FIXTURES / "vqa_med_2019"), split="test"),
        "pathvqa": DatasetSpec(source="pathvqa", path=str(FIXTURES / "pathvqa" / "pvqa"), split="train"),
        "cvbench": DatasetSpec(source="cvbench", path=str(FIXTURES / "cvbench" / "parquet"), split="test"),
    }
    assert set(specs) == set(TASKS), "give a new task a fixture here"
    for name, spec in specs.items():
        direct = TASKS[name].load(spec)
        loaded = rarl.tasks.loading.load_dataset_spec(spec)
        assert loaded, name
        assert [s.id for s in loaded] == [s.id for s in direct]
        assert {s.benchmark for s in loaded} == {name}


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_no_benchmark_loader_lives_outside_its_task_module():
    """rarl/data/loaders holds only the generic helpers and tables; ``load_<source>`` of a registered
    source is defined in rarl/tasks/<module>.py and nowhere else."""
    assert {p.stem for p in (PACKAGE / "data" / "loaders").glob("*.py")} == {"__init__", "common", "tables"}
    wanted = {f"load_{name}": PACKAGE / "tasks" / f"{module}.py" for name, module in MODULES.items()}
    found: dict[str, list[Path]] = {name: [] for name in wanted}
    for path in PACKAGE.rglob("*.py"):
        for name in _functions(path) & set(wanted):
            found[name].append(path)
    assert found == {name: [path] for name, path in wanted.items()}


def test_hub_ids_come_from_the_task_modules():
    """The hub copies docs/data.md lists (from their dataset cards), each known by its benchmark's module."""
    assert rarl.tasks.HUB_DATASETS == {
        "flaviagiammarino/vqa-rad": "vqa_rad",
        "flaviagiammarino/path-vqa": "pathvqa",
        "bokelvin/slake": "slake",
        "nyu-visionx/cv-bench": "cvbench",
    }
    for hub_id, name in rarl.tasks.HUB_DATASETS.items():
        assert hub_id in import_module(f"rarl.tasks.{MODULES[name]}").TASK.hub_ids


TOY = """
from rarl.schema.sample import Sample
from rarl.tasks.base import Task


def load_toy_bench(spec):
    return [Sample(id=str(i), image=None, question=f"q{i}", answer="a|b", question_type="open",
                   split=spec.split) for i in range(3)]


TASK = Task("toy_bench", load=load_toy_bench, hub_ids=("someone/toy",),
            reference_forms=lambda reference: reference.split("|"))
"""


@pytest.fixture
def toy_registered(tmp_path, monkeypatch):
    """A benchmark added as one file (rarl/tasks/toy_bench.py, here in a temporary folder on the package's
    path) and one SourceInfo line; the registry and dispatch rebuilt from that line."""
    (tmp_path / "toy_bench.py").write_text(TOY, encoding="utf-8")
    monkeypatch.setattr(rarl.tasks, "__path__", [*rarl.tasks.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "rarl.tasks.toy_bench", raising=False)
    sources = (*SOURCES, SourceInfo("toy_bench", "a toy benchmark", ("test",), "toy_bench"))
    tasks = build_tasks(sources)
    for module in (rarl.tasks, rarl.tasks.loading):
        monkeypatch.setattr(module, "TASKS", tasks)
        monkeypatch.setattr(module, "HUB_DATASETS", hub_datasets(tasks))
    yield tasks
    sys.modules.pop("rarl.tasks.toy_bench", None)
    vars(rarl.tasks).pop("toy_bench", None)  # the import set it as the package's attribute


def test_adding_a_benchmark_is_one_file_and_one_registry_line(toy_registered):
    assert set(toy_registered) == set(TASKS) | {"toy_bench"}
    spec = DatasetSpec(source="toy_bench", split="test")  # type: ignore[arg-type]  # config reads SOURCES
    samples = rarl.tasks.loading.load_dataset_spec(spec)
    assert [(s.id, s.benchmark, s.dataset) for s in samples] == [
        (str(i), "toy_bench", "toy_bench") for i in range(3)
    ]
    # its hub copy needs no column map, and its reference rule is the one its file defines
    hub = rarl.tasks.loading.load_dataset_spec(replace(spec, source="hf", path="Someone/Toy"))
    assert {s.benchmark for s in hub} == {"toy_bench"}
    assert rarl.tasks.reference_forms("toy_bench", "a|b") == ["a", "b"]
    assert rarl.tasks.reference_forms("vqa_rad", "a|b") == ["a|b"]
