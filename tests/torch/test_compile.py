"""blip_torch.compile_vision: the compiled vision tower gives the eager numbers and ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile (inductor) needs a C++ compiler on CPU",
)
def test_compile_vision_matches_eager():
    import torch._inductor.config as inductor_config

    saved = inductor_config.freezing
    eager = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption").eval()
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption").eval()
    pixels = torch.from_numpy(make_inputs(batch=2, seed=5)["pixel_values"])
    try:
        assert blip_torch.compile_vision(model) is model
        assert inductor_config.freezing is True
        with torch.no_grad():
            want = eager.vision_model(pixels).last_hidden_state
            got = model.vision_model(pixels).last_hidden_state
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
            gen = dict(max_new_tokens=6, min_new_tokens=6)
            assert model.generate(pixels, **gen).tolist() == eager.generate(pixels, **gen).tolist()
        assert set(model.state_dict()) == set(eager.state_dict())  # keys unchanged
    finally:
        inductor_config.freezing = saved
        torch._dynamo.reset()


def test_compile_vision_needs_a_vision_tower():
    text = blip_torch.BlipTextModel(blip_torch.BlipTextConfig(hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=4, intermediate_size=37, vocab_size=99))  # fmt: skip
    with pytest.raises(TypeError, match="BlipTextModel has no BLIP vision tower"):
        blip_torch.compile_vision(text)
