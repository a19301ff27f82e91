"""rarl/compat.py: every private library name rarl uses still has the shape rarl relies on, and a changed
one fails loudly (PrivateAPIChanged naming library, versions and what changed), never silently wrong.

The oracle is the installed library itself (its classes and signatures), not rarl's record of it.
"""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest

from rarl import compat
from rarl.compat import PrivateAPIChanged


def test_every_touch_names_a_checked_version_and_the_installed_library_matches_it() -> None:
    assert compat.TOUCHES
    for touch in compat.TOUCHES:
        assert touch.checked.count(".") == 2 and touch.why, touch
        metadata.version(touch.library)  # installed


@pytest.mark.parametrize("method", sorted(compat.GRPO_TIMED_METHODS.values()))
def test_grpo_trainer_private_methods_have_the_recorded_parameters(method: str) -> None:
    from trl import GRPOTrainer

    touch = next(t for t in compat.TOUCHES if t.name == f"GRPOTrainer.{method}")
    actual = tuple(p for p in inspect.signature(getattr(GRPOTrainer, method)).parameters if p != "self")
    assert actual == touch.parameters
    compat._checked_method(GRPOTrainer, method, touch)  # and the runtime check agrees


def test_a_changed_grpo_method_stops_the_benchmark_loudly(monkeypatch) -> None:
    from trl import GRPOTrainer

    class Changed(GRPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions):  # TRL dropped a parameter
            return None

    trainer = object.__new__(Changed)
    expected = r"^trl \S+: GRPOTrainer\._calculate_rewards now takes"
    with pytest.raises(PrivateAPIChanged, match=expected) as caught:
        compat.check_grpo_trainer(trainer)
    assert "checked against trl 1.16.0" in str(caught.value)
    monkeypatch.delattr(GRPOTrainer, "_prepare_inputs")  # transformers' Trainer still has one: the override
    # is what TRL changed; the inherited method takes other parameters and is refused as well
    with pytest.raises(PrivateAPIChanged, match=r"_prepare_inputs (now takes|no longer exists)"):
        compat.check_grpo_trainer(object.__new__(GRPOTrainer))


def test_wrapping_keeps_the_original_behind_the_wrapper() -> None:
    from trl import GRPOTrainer

    trainer = object.__new__(GRPOTrainer)
    calls = []
    compat.wrap_grpo_method(trainer, "generation", lambda original: lambda *a: calls.append(a) or original)
    assert trainer._generate("prompts") is not None and calls == [("prompts",)]


def test_generate_result_shape_is_checked() -> None:
    assert compat.generated_token_ids(([[1, 2]], [[3]], None)) == ([[1, 2]], [[3]])
    with pytest.raises(PrivateAPIChanged, match=r"GRPOTrainer\._generate returned dict"):
        compat.generated_token_ids({"prompt_ids": []})
    with pytest.raises(PrivateAPIChanged, match="lists of prompt and completion token ids"):
        compat.generated_token_ids(("text", [[3]]))


def test_openai_http_library_is_the_clients_own() -> None:
    import openai

    library = compat.openai_http_library()
    assert issubclass(openai.DefaultAsyncHttpxClient, library.AsyncClient)
    assert issubclass(library.AsyncHTTPTransport, library.AsyncBaseTransport)


def test_openai_without_its_http_client_fails_loudly(monkeypatch) -> None:
    import openai

    monkeypatch.setattr(openai, "DefaultAsyncHttpxClient", object)
    with pytest.raises(PrivateAPIChanged, match=r"^openai \S+: .*subclasses no AsyncClient.*checked against"):
        compat.openai_http_library()


def test_torch_fake_tensor_touches_work_against_the_installed_torch() -> None:
    """The memory prediction's torch touches: the fake mode converts a module with fake parameters (the
    swap_tensors workaround), the aten operators it calls exist, and torch's own function comes back."""
    import torch

    tools = compat.fake_tensor_tools()
    ops = compat.aten_ops()
    assert all(isinstance(op, torch._ops.OpOverload) for op in vars(ops).values())
    original = torch.utils.swap_tensors
    with compat.fake_tensor_mode():
        layer = torch.nn.Linear(4, 3).to(torch.bfloat16)
        assert tools.is_fake(layer.weight) and layer.weight.dtype == torch.bfloat16
        out = ops.scaled_dot_product_efficient_attention(
            *(torch.randn(1, 2, 64, 8) for _ in range(3)), None, True, 0.0, False
        )
        assert out[0].shape == (1, 2, 64, 8) and out[1].shape[:2] == (1, 2)  # no 64 x 64 matrix
    assert torch.utils.swap_tensors is original
    assert not tools.is_fake(torch.zeros(1))
