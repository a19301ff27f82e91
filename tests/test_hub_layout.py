"""Qwen2-VL-2B-Instruct in the hub's layout: the real Qwen2 tokenizer, chat template and processor, offline.

Oracles: the published config.json ids (QWEN2_VL_2B_ARCH), the model card's example conversation, token ids
published for Qwen2-family prompts (vLLM request logs and engine examples that print the ids of
``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>...``), and real dataset text round-tripping.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from PIL import Image

from rarl.config import ModelConfig, RunConfig
from rarl.models import QWEN2_VL_2B_ARCH
from tests.conftest import REALDATA

# The model card's "Without qwen_vl_utils" example and the prompt text it prints (huggingface.co/Qwen/
# Qwen2-VL-2B-Instruct README).
CARD_CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}
]
CARD_TEXT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n"
)
SYSTEM = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]
ASSISTANT = [151645, 198, 151644, 77091, 198]
# user turns whose ids are published (Qwen2/Qwen2.5 share the vocabulary): vLLM logs and examples
PUBLISHED = {
    "How to learn english, 请用中文回答": [4340, 311, 3960, 28963, 11, 220, 14880, 11622, 104811, 102104],
    "Tell me a story": [40451, 752, 264, 3364],
    "What is the capital of France?": [3838, 374, 279, 6722, 315, 9625, 30],
    "How are you?": [4340, 525, 498, 30],
}


BUDGET = 256 * 28 * 28  # the 256-token budget


@pytest.fixture(scope="module")
def hub_processor(hub_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(hub_model_dir)


@pytest.fixture(scope="module")
def budget_processor(hub_model_dir):
    """The processor as rarl loads it under a 256-token budget (loading the 8 MB tokenizer takes seconds)."""
    from rarl.models import load_processor

    return load_processor(ModelConfig(name_or_path=str(hub_model_dir), max_pixels=BUDGET))


def test_loads_as_the_hub_classes_with_the_published_ids(hub_model_dir, hub_processor):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hub_model_dir)
    assert type(hub_processor).__name__ == "Qwen2VLProcessor"
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == 151657  # 151,643 BPE ranks + 14 added tokens
    assert AutoConfig.from_pretrained(hub_model_dir).text_config.vocab_size == 151936
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    assert ids == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
    published = {  # config.json of the hub model
        "<|image_pad|>": QWEN2_VL_2B_ARCH["image_token_id"],
        "<|video_pad|>": QWEN2_VL_2B_ARCH["video_token_id"],
        "<|vision_start|>": QWEN2_VL_2B_ARCH["vision_start_token_id"],
        "<|vision_end|>": QWEN2_VL_2B_ARCH["vision_end_token_id"],
    }
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in published} == published
    added = tokenizer.added_tokens_decoder
    assert sorted(added) == list(range(151643, 151657)) and all(t.special for t in added.values())
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    generation = json.loads((hub_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643] and generation["pad_token_id"] == 151643
    preprocessor = json.loads((hub_model_dir / "preprocessor_config.json").read_text())
    assert (preprocessor["min_pixels"], preprocessor["max_pixels"]) == (3136, 12845056)


def test_the_model_cards_conversation_renders_to_the_cards_text(hub_processor):
    text = hub_processor.apply_chat_template(CARD_CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text == CARD_TEXT
    assert hub_processor.tokenizer(text)["input_ids"][:5] == [151644, 8948, 198, 2610, 525]


@pytest.mark.parametrize("question", list(PUBLISHED))
def test_published_qwen2_tokenizations(hub_processor, question):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": question},
    ]
    text = hub_processor.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert hub_processor.tokenizer(text)["input_ids"] == SYSTEM + PUBLISHED[question] + ASSISTANT


def test_think_answer_tags_are_ordinary_text_merged_across_boundaries(hub_processor):
    """In Qwen2 the tags are not tokens: BPE merges them with their neighbours (`.</`, `><`)."""
    tokenizer = hub_processor.tokenizer
    text = "<think>The lung is clear.</think><answer>no</answer>"
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert ".</" in pieces and "><" in pieces and "think" in pieces
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def _real_texts() -> list[str]:
    """VQA-RAD's questions and answers (through its loader) and all of SLAKE's, English and Chinese (its
    loader keeps English only, so the Chinese rows are read from the official JSON)."""
    from rarl.config import DatasetSpec
    from rarl.tasks.loading import load_dataset_spec

    for folder in ("vqa_rad", "slake"):
        if not (REALDATA / folder).exists():
            pytest.skip(f"realdata/{folder} not present")
    spec = DatasetSpec(source="vqa_rad", path=str(REALDATA / "vqa_rad"), split="train")
    texts = [text for sample in load_dataset_spec(spec) for text in (sample.question, sample.answer)]
    for name in ("train.json", "validate.json", "test.json"):
        for record in json.loads((REALDATA / "slake" / "Slake1.0" / name).read_text(encoding="utf-8")):
            texts += [str(record["question"]), str(record["answer"])]
    return texts


def test_real_dataset_text_round_trips(hub_processor):
    """VQA-RAD and SLAKE (English and Chinese) questions and answers decode back to their NFC form."""
    tokenizer = hub_processor.tokenizer
    texts = _real_texts()
    assert any("\u4e00" <= ch <= "\u9fff" for text in texts for ch in text)  # SLAKE's Chinese rows
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.batch_decode(ids)
    wrong = [(t, d) for t, d in zip(texts, decoded, strict=True) if d != unicodedata.normalize("NFC", t)]
    assert not wrong, wrong[:3]
    assert all(i < 151643 for row in ids for i in row)  # ordinary text never yields a control token


# --------------------------------------------------------------------------------------------------
# the pixel budget reaches the processor (the hub's preprocessor_config.json carries its own)


def test_the_pixel_budget_overrides_the_checkpoints_preprocessor_config(hub_model_dir, tmp_path):
    """synpic31256.jpg is 1024x846: under a 256-token budget the processor must emit the counted 238."""
    from rarl.data.budget import image_tokens
    from rarl.data.images import load_image
    from rarl.models import load_processor

    model = ModelConfig(name_or_path=str(hub_model_dir), max_pixels=256 * 28 * 28)
    processor = load_processor(model)
    image = load_image(Image.new("RGB", (1024, 846), (90, 90, 90)), max_pixels=model.max_pixels)
    text = processor.apply_chat_template(CARD_CONVERSATION, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], images=[image])["input_ids"][0]
    sent = list(ids).count(151655)
    assert sent == image_tokens(1024, 846, model.min_pixels, model.max_pixels) == 238
    # the processor saved beside a trained adapter records the budget, and reloads with it
    processor.save_pretrained(tmp_path)
    from transformers import AutoProcessor

    reloaded = AutoProcessor.from_pretrained(tmp_path).image_processor.size
    assert (reloaded["shortest_edge"], reloaded["longest_edge"]) == (model.min_pixels, model.max_pixels)


@pytest.mark.parametrize("role", ["train", "eval"])
@pytest.mark.parametrize("size", [(1024, 846), (500, 331), (1200, 90), (30, 40), (56, 56)])
def test_counted_prompt_length_is_the_processed_length(hub_model_dir, budget_processor, role, size):
    """No allowance for markup: the pre-flight's prompt tokens are the processor's input ids, exactly."""
    from rarl import prompts
    from rarl.data.budget import load_token_counter, sample_tokens
    from rarl.data.images import load_image
    from rarl.schema.sample import Sample

    config = RunConfig(model=ModelConfig(name_or_path=str(hub_model_dir), max_pixels=BUDGET))
    config.data.prompt_diversity = False  # one template, so "worst template" is the one rendered below
    processor = budget_processor
    image = Image.new("RGB", size, (90, 90, 90))
    sample = Sample("s", image, "Is there a fracture of the left femur?", "no", "closed")
    count, how = load_token_counter(config, processor)
    [need] = sample_tokens([sample], config, role, count)
    if role == "train":
        messages = prompts.training_messages(sample.question, config.data.single_template)
    else:
        messages = prompts.inference_messages(sample.question, config.eval.prompt)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    loaded = load_image(image, max_pixels=config.model.max_pixels)
    ids = list(processor(text=[text], images=[loaded])["input_ids"][0])
    assert how == "tokenizer"
    assert need.image_tokens == ids.count(151655)
    assert need.prompt_tokens == len(ids)


def _real_samples() -> list:
    from rarl.config import DatasetSpec
    from rarl.tasks.loading import load_dataset_spec

    specs = [("vqa_rad", "vqa_rad", s) for s in ("train", "test")]
    specs += [("slake", "slake", s) for s in ("train", "validation", "test")]
    specs += [("vqa_med_2019", "vqa_med_2019", s) for s in ("train", "validation", "test")]
    samples = []
    for source, folder, split in specs:
        if not (REALDATA / folder).exists():
            pytest.skip(f"realdata/{folder} not present")
        spec = DatasetSpec(source=source, path=str(REALDATA / folder), split=split, skip_bad=True)
        samples += load_dataset_spec(spec)  # VQA-Med 2019: only the rows whose image is present
    return samples


def test_preflight_equals_the_processor_on_every_real_image(hub_model_dir, budget_processor):
    """Every image of VQA-RAD, SLAKE and VQA-Med 2019: counted image tokens are the `<|image_pad|>` tokens
    the processor inserts, and the counted prompt is the processed prompt's length (one row per distinct
    image size through the whole processor; every row's text against the tokenizer's count of its rendered
    prompt)."""
    from rarl.data.budget import image_size, load_token_counter, sample_tokens
    from rarl.data.images import load_image

    config = RunConfig(model=ModelConfig(name_or_path=str(hub_model_dir), max_pixels=BUDGET))
    processor = budget_processor
    samples = _real_samples()
    count, _ = load_token_counter(config, processor)
    needs = sample_tokens(samples, config, "eval", count)
    assert len({str(n.sample.image) for n in needs}) == 315 - 1 + 642 + 1506  # VQA-RAD: 1 unreferenced
    # The processor's count depends on the size that reaches it, not on the pixels: one real image per
    # distinct native size goes through the whole processor (the others share its arithmetic exactly).
    first: dict[object, object] = {}
    for need in needs:
        first.setdefault(image_size(need.sample.image), need)
    assert len(first) > 1000  # 1,179 distinct sizes
    import torch

    from rarl import prompts

    wrong = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is ~7x faster than two contended ones here
    try:
        for need in first.values():
            path = need.sample.image
            sample = need.sample
            messages = prompts.inference_messages(sample.question, config.eval.prompt, sample.choices)
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            image = load_image(path, max_pixels=config.model.max_pixels)
            ids = list(processor(text=[text], images=[image])["input_ids"][0])
            if (need.image_tokens, need.prompt_tokens) != (ids.count(151655), len(ids)):
                wrong.append((path, need.image_tokens, ids.count(151655), need.prompt_tokens, len(ids)))
    finally:
        torch.set_num_threads(threads)
    assert not wrong, wrong[:5]
    # every row: the counted text is the rendered prompt's ids less the one image placeholder
    rendered = [
        processor.apply_chat_template(
            prompts.inference_messages(n.sample.question, config.eval.prompt, n.sample.choices),
            add_generation_prompt=True,
            tokenize=False,
        )
        for n in needs
    ]
    lengths = [len(ids) - 1 for ids in processor.tokenizer(rendered)["input_ids"]]
    assert [n.text_tokens for n in needs] == lengths


def test_training_prompts_get_the_templates_default_system_turn(hub_processor):
    """The paper's templates are user turns: the real template puts Qwen's default system turn first and
    the medical instruction after the image (the decision documented in docs/training.md)."""
    from rarl import prompts

    for name, template in prompts.TRAINING_TEMPLATES.items():
        messages = prompts.training_messages("Is the heart enlarged?", name)
        text = hub_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert text == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|>"
            + template.format(question="Is the heart enlarged?")
            + "<|im_end|>\n<|im_start|>assistant\n"
        )
    # inference prompts bring their own system turn: no default is inserted
    messages = prompts.inference_messages("Is the heart enlarged?", "reasoning")
    text = hub_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "You are a helpful assistant." not in text
    assert text.startswith("<|im_start|>system\n" + prompts.INFERENCE_SYSTEM_PROMPTS["reasoning"])


def test_sft_sequence_length_is_counted_exactly(hub_model_dir, budget_processor):
    """SFT trains on prompt + the assistant turn: the counted total is the processed conversation's length
    (the target includes the turn's closing `<|im_end|>` and newline)."""
    from rarl import prompts
    from rarl.data.budget import load_token_counter, sample_tokens
    from rarl.data.images import load_image
    from rarl.schema.sample import Sample

    config = RunConfig(model=ModelConfig(name_or_path=str(hub_model_dir), max_pixels=BUDGET))
    config.train.method = "sft"
    config.data.prompt_diversity = False
    processor = budget_processor
    image = Image.new("RGB", (640, 480), (90, 90, 90))
    sample = Sample("s", image, "Which lobe?", "right upper lobe", "open", reasoning="The opacity is high.")
    count, _ = load_token_counter(config, processor)
    [need] = sample_tokens([sample], config, "train", count)
    target = f"<think>{sample.reasoning}</think><answer>{sample.answer}</answer>"
    conversation = [
        *prompts.training_messages(sample.question, config.data.single_template),
        {"role": "assistant", "content": [{"type": "text", "text": target}]},
    ]
    text = processor.apply_chat_template(conversation, tokenize=False)
    loaded = load_image(image, max_pixels=config.model.max_pixels)
    ids = list(processor(text=[text], images=[loaded])["input_ids"][0])
    assert need.prompt_tokens + need.target_tokens == len(ids)
