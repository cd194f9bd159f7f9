"""blip_torch against transformers 4.57.6 PyTorch BLIP: same files, same inputs, same outputs."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import BASE_TEXT, BASE_VISION, TINY_TEXT, TINY_VISION, compare_outputs  # noqa: E402
from tests.reference import build_reference, reference_config  # noqa: E402
from tests.torch.cases import CASES, case_kwargs, to_torch  # noqa: E402


def _run_pair(tmp_path, case: str, text_cfg: dict, vision_cfg: dict, atol: float, config=None):
    class_name = CASES[case]
    reference = build_reference(class_name, config)
    reference.save_pretrained(tmp_path)
    ours = getattr(blip_torch, class_name).from_pretrained(tmp_path)
    text_config = getattr(ours.config, "text_config", ours.config)
    # The reference ignores encoder_attention_mask in cross-attention (see BlipTextConfig).
    text_config.ignore_encoder_attention_mask = True
    kwargs = to_torch(case_kwargs(case, text_cfg, vision_cfg))
    with torch.no_grad():
        expected = reference(**kwargs)
        got = ours(**kwargs)
    return compare_outputs(got, expected, atol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_parity(tmp_path, case):
    _run_pair(tmp_path, case, TINY_TEXT, TINY_VISION, atol=1e-5)


def test_gradients_match_reference(tmp_path):
    reference = build_reference("BlipForConditionalGeneration")
    reference.save_pretrained(tmp_path)
    ours = blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path)
    kwargs = to_torch(case_kwargs("caption", TINY_TEXT, TINY_VISION))
    reference(**kwargs).loss.backward()
    ours(**kwargs).loss.backward()
    ref_params = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        ref = ref_params[name]
        assert torch.allclose(p.grad, ref.grad, atol=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["caption", "vqa", "itm", "blip_model"])
def test_base_size_parity(tmp_path, case):
    text = {**BASE_TEXT, "vocab_size": 30524}
    vision = {**BASE_VISION, "image_size": 384, "hidden_size": 768}
    config = reference_config(text=BASE_TEXT, vision=BASE_VISION, composite={})
    _run_pair(tmp_path, case, text, vision, atol=1e-4, config=config)
