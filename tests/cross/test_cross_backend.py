"""blip_torch and blip_tf on the same weights: in memory (numpy dicts) and through files."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

import blip_tf  # noqa: E402
import blip_torch  # noqa: E402
from blip_torch.checkpoint import load_numpy_state, state_to_numpy  # noqa: E402
from tests.helpers import TINY_TEXT, TINY_VISION, compare_outputs  # noqa: E402
from tests.reference import perturb  # noqa: E402
from tests.tf.cases import config_for, tiny_config  # noqa: E402
from tests.torch.cases import CASES, case_kwargs, to_torch  # noqa: E402

# One case per class (the masked-encoder and VQA cases exercise both mask paths).
CLASS_CASES = {
    "BlipVisionModel": "vision",
    "BlipTextModel": "text_cross",
    "BlipTextLMHeadModel": "lm_head",
    "BlipModel": "blip_model",
    "BlipForConditionalGeneration": "caption",
    "BlipForQuestionAnswering": "vqa",
    "BlipForImageTextRetrieval": "itm",
}
assert set(CLASS_CASES.values()) <= set(CASES)


def _torch_model(class_name: str, seed: int = 0):
    torch.manual_seed(seed)
    return perturb(getattr(blip_torch, class_name)(config_for(class_name, tiny_config())), seed)


# LM logits here reach |20|; each float32 backend is ~6e-6 away from a float64 run of the same
# weights (measured), so the two can be ~1.2e-5 apart: 2e-5, not 1e-5, for rounding alone.
ATOL = 2e-5


def _compare(torch_model, tf_model, case: str, atol: float = ATOL) -> str:
    kwargs = case_kwargs(case, TINY_TEXT, TINY_VISION)
    with torch.no_grad():
        expected = torch_model(**to_torch(kwargs))
    return compare_outputs(tf_model(**kwargs), expected, atol=atol)


@pytest.mark.parametrize("class_name", sorted(CLASS_CASES))
def test_in_memory_numpy_exchange(class_name):
    """torch -> numpy -> keras -> numpy -> torch: bit-exact weights, same outputs."""
    source = _torch_model(class_name)
    state = state_to_numpy(source)
    ours = getattr(blip_tf, class_name)(config_for(class_name, tiny_config()))
    ours.load_weights_dict(state)
    back = ours.get_weights_dict()
    assert set(back) == set(state)
    for key in state:
        np.testing.assert_array_equal(back[key], state[key], err_msg=key)
    again = getattr(blip_torch, class_name)(config_for(class_name, tiny_config()))
    load_numpy_state(again, back)
    for key, value in state_to_numpy(again).items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    print(_compare(source.eval(), ours, CLASS_CASES[class_name]))


@pytest.mark.parametrize("class_name", sorted(CLASS_CASES))
def test_through_files_both_ways(tmp_path, class_name):
    source = _torch_model(class_name, seed=1)
    source.save_pretrained(tmp_path / "torch")
    ours = getattr(blip_tf, class_name).from_pretrained(tmp_path / "torch")
    _compare(source.eval(), ours, CLASS_CASES[class_name])
    ours.save_pretrained(tmp_path / "tf")
    theirs = getattr(blip_torch, class_name).from_pretrained(tmp_path / "tf")
    _compare(theirs.eval(), ours, CLASS_CASES[class_name])
