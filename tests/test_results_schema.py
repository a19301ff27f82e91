"""The typed reader of ``results.json``: a real tiny-model run, old and bare files, wrong types."""

from __future__ import annotations

import json

import pytest
from test_eval_harness import write_config

from rarl.cli import main
from rarl.config import load_config
from rarl.errors import DataError
from rarl.eval.checkpoints import metric_value
from rarl.eval.harness import run_evaluation
from rarl.report.tables import results_markdown
from rarl.schema.results import RunResults, read_results


def _leaves(node: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every leaf of a raw JSON block by key path (metric names hold dots), walked independently of the
    reader."""
    out: dict[tuple[str, ...], object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def test_a_real_eval_results_file_reads_back_value_for_value(tmp_path, tiny_model_dir):
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    run_evaluation(config, progress=False)
    path = tmp_path / "eval" / "results.json"
    raw = json.loads(path.read_text())
    typed = read_results(path)

    assert typed.model == raw["model"] and typed.n == raw["n"] == 6
    assert typed.dataset_names == raw["datasets"]
    rule = typed.rule_metrics
    assert rule is not None and set(rule.datasets) == set(raw["rule_metrics"]["datasets"])
    blocks = {"All": raw["rule_metrics"]["overall"], **raw["rule_metrics"]["datasets"]}
    checked = 0
    for dataset, block in blocks.items():
        typed_block = rule.block(dataset)
        assert typed_block is not None
        for (*path, name), value in _leaves(block).items():
            inner = typed_block
            for part in path:
                inner = inner.part(part)
            if name.endswith("_ci"):
                metric = inner.metric(name[: -len("_ci")])
                assert [metric.low, metric.high] == value
            elif name.endswith("_n") and name[:-2] in block:
                assert inner.metric(name[:-2]).n == value
            elif isinstance(value, (int, float)):
                assert typed_block.lookup(".".join([*path, name])) == pytest.approx(value)
                checked += 1
    assert checked >= 4  # n and accuracy at least, overall and per dataset
    assert "rarl.accuracy" in rule.overall.metric_names()
    assert metric_value(typed, "rarl.accuracy") == raw["rule_metrics"]["overall"]["rarl.accuracy"]
    # results.json is the serialised dataclass: reading it back and writing it again changes nothing.
    assert typed.to_dict() == raw
    assert RunResults.from_dict(typed.to_dict()) == typed
    # The markdown from the dict and from the typed object is the same text.
    assert results_markdown(raw) == results_markdown(typed)


def test_old_and_bare_files_load(tmp_path):
    bare = RunResults.from_dict({"model": "x"})
    assert bare.model == "x" and bare.n is None and bare.rule_metrics is None and not bare.judges
    assert bare.dataset_names == [] and bare.checkpoint_selection is None
    assert "No scores in this results.json" in results_markdown({"model": "x"})

    # Written before intervals, judges' prompt versions and dataset lists existed.
    old = {
        "model": "m",
        "n": 10,
        "rule_metrics": {"n": 10, "overall": {"n": 10, "accuracy": 0.5}, "datasets": {"VQA-RAD": {"n": 10}}},
        "judges": {
            "j": {"model": "gpt", "summary": {"overall": {"n": 10, "reasoning": None, "final": 40.0}}}
        },
    }
    typed = RunResults.from_dict(old)
    accuracy = typed.rule_metrics.overall.metric("rarl.accuracy")  # the old name, read as rarl's metric
    assert (accuracy.value, accuracy.low, accuracy.high, accuracy.n) == (0.5, None, None, 10)
    assert typed.dataset_names == ["VQA-RAD"]
    judge = typed.judges["j"]
    assert judge.overall.final == 40.0 and judge.overall.reasoning is None and judge.stats.n == 0
    assert judge.block("VQA-RAD") is None
    # An old file with no interval still gets one in the report: Wilson from value and n.
    assert "50.0" in results_markdown(old)


def test_a_wrong_type_names_file_and_field(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "results.json"
    path.write_text(
        json.dumps({"model": "m", "rule_metrics": {"overall": {"n": 4, "accuracy": "high"}, "datasets": {}}})
    )
    with pytest.raises(DataError) as error:
        read_results(path)
    assert str(path) in str(error.value) and "rule_metrics.overall.accuracy" in str(error.value)

    path.write_text(json.dumps({"model": "m", "judges": {"j": {"stats": {"n": "six"}}}}))
    with pytest.raises(DataError, match=r"judges\.j\.stats\.n"):
        read_results(path)

    # The CLI turns it into a one-line error, exit 2, no traceback.
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "judges.j.stats.n" in err and "Traceback" not in err
