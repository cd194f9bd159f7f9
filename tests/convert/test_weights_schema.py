"""The key space described once (blip_core.weights.schema) and the helpers derived from it:
checked against transformers' own models and hand-written tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.weights import fill_untied_lm_head, read_safetensors, select_submodel
from blip_core.weights import schema as S
from blip_core.weights.io import WeightLoadError, write_safetensors
from blip_core.weights.resize import bicubic_matrix
from tests.reference import REFERENCE_CLASSES, build_reference


@pytest.fixture(scope="module")
def reference_keys():
    """Every class's state-dict keys as transformers writes them (buffers left out)."""
    out = {}
    for name in REFERENCE_CLASSES:
        keys = build_reference(name).state_dict().keys()
        out[name] = sorted(k for k in keys if not k.endswith("position_ids"))
    return out


def test_derived_tables_match_the_hand_written_ones():
    assert S.TASK_CLASSES == {
        "caption": "BlipForConditionalGeneration",
        "vqa": "BlipForQuestionAnswering",
        "itm": "BlipForImageTextRetrieval",
        "model": "BlipModel",
    }
    assert S.TASK_MODULES["vqa"] == ("vision_model", "text_encoder", "text_decoder")
    assert S.TASK_MODULES["model"] == (
        "vision_model", "text_model", "visual_projection", "text_projection", "logit_scale",
    )  # fmt: skip
    assert S.LM_HEAD_PREFIXES == ("text_decoder.", "")
    assert S.SUBMODEL_PREFIXES == {
        "BlipVisionModel": ("vision_model.",),
        "BlipTextModel": ("text_encoder.", "text_model."),
        "BlipTextLMHeadModel": ("text_decoder.",),
    }
    # transformers' TF BLIP: Keras 2 model names and top-level layers of each class.
    assert S.TF_MODEL_LAYOUTS == {
        "BlipModel": ("tf_blip_model", "blip", ("blip",)),
        "BlipForConditionalGeneration": (
            "tf_blip_for_conditional_generation", "", ("vision_model", "text_decoder"),
        ),
        "BlipForQuestionAnswering": (
            "tf_blip_for_question_answering", "", ("vision_model", "text_encoder", "text_decoder"),
        ),
        "BlipForImageTextRetrieval": (
            "tf_blip_for_image_text_retrieval", "",
            ("vision_model", "text_encoder", "vision_proj", "text_proj", "itm_head"),
        ),
        "BlipVisionModel": ("tf_blip_vision_model", "", ("embeddings", "encoder", "post_layernorm")),
        "BlipTextModel": ("tf_blip_text_model", "", ("embeddings", "encoder", "pooler")),
        "BlipTextLMHeadModel": ("tf_blip_text_lm_head_model", "", ("bert", "cls")),
    }  # fmt: skip
    assert S.schema("TFBlipForQuestionAnswering").lm_head_prefixes == ("text_decoder.",)
    with pytest.raises(ValueError, match="unknown BLIP model class 'BlipForSegmentation'"):
        S.schema("BlipForSegmentation")


def test_key_patterns_cover_exactly_each_reference_model(reference_keys):
    for name, keys in reference_keys.items():
        pattern = S.key_pattern(name)
        assert [k for k in keys if not pattern.fullmatch(k)] == [], name
        assert all(S.is_blip_key(k) for k in keys)
    whole = [n for n in REFERENCE_CLASSES if S.SCHEMAS[n].task]
    for a in whole:
        for b in whole:
            modules_b = set(S.SCHEMAS[b].modules)
            matched = {k for k in reference_keys[a] if S.key_pattern(b).fullmatch(k)}
            assert matched == {k for k in reference_keys[a] if k.split(".")[0] in modules_b}, (a, b)
    assert not S.is_blip_key("bert.embeddings.token_type_embeddings.weight")
    assert not S.is_blip_key("text_decoder.cls.predictions.transform.dense.running_mean")


def test_submodel_selection_uses_the_schema_prefixes(reference_keys):
    state = {k: np.zeros(1) for k in reference_keys["BlipForQuestionAnswering"]}
    text = set(reference_keys["BlipTextModel"]) - {"pooler.dense.weight", "pooler.dense.bias"}
    sub = select_submodel(["BlipTextModel", "object"], text, state)
    assert set(sub) == {
        k.removeprefix("text_encoder.") for k in state if k.startswith("text_encoder.")
    }
    lm = select_submodel(["BlipTextLMHeadModel"], reference_keys["BlipTextLMHeadModel"], state)
    assert lm["cls.predictions.bias"] is state["text_decoder.cls.predictions.bias"]
    assert select_submodel(["BlipVisionModel"], {"nothing"}, state) is state


def test_fill_untied_lm_head():
    emb = np.arange(6.0).reshape(3, 2)
    state = {
        "text_decoder.bert.embeddings.word_embeddings.weight": emb,
        "text_decoder.cls.predictions.bias": np.zeros(3),
        "text_encoder.embeddings.word_embeddings.weight": emb,  # no LM head here
    }
    out = fill_untied_lm_head(state)
    assert out is state
    assert state["text_decoder.cls.predictions.decoder.weight"] is emb
    assert sorted(state) == sorted([*out])  # nothing else added
    assert "text_encoder.cls.predictions.decoder.weight" not in state
    mine = np.ones((3, 2))
    state["text_decoder.cls.predictions.decoder.weight"] = mine
    assert fill_untied_lm_head(state)["text_decoder.cls.predictions.decoder.weight"] is mine
    root = {"bert.embeddings.word_embeddings.weight": emb, "cls.predictions.decoder.bias": emb[0]}
    assert fill_untied_lm_head(root)["cls.predictions.decoder.weight"] is emb


def test_one_bicubic_matrix_equals_torch_interpolate():
    """The one resize matrix (used by the converter and blip_tf) is torch's bicubic
    ``F.interpolate(align_corners=False)`` along one axis; blip_tf uses this very function."""
    torch = pytest.importorskip("torch")
    vision = pytest.importorskip("blip_tf.vision")
    assert vision.bicubic_resize_matrix is bicubic_matrix
    rng = np.random.default_rng(0)
    for n_in, n_out in [(24, 30), (24, 14), (4, 5), (7, 3), (1, 4)]:
        x = rng.standard_normal(n_in)
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(x)[None, None, :, None],
            size=(n_out, 1),
            mode="bicubic",
            align_corners=False,
        )[0, 0, :, 0].numpy()
        np.testing.assert_allclose(bicubic_matrix(n_in, n_out) @ x, expected, rtol=0, atol=1e-12)


def test_safetensors_reader_maps_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    state = {"b": np.arange(12, dtype=np.float32).reshape(3, 4), "a": np.arange(3, dtype=np.int64)}
    write_safetensors(state, path)
    before = path.read_bytes()
    back = read_safetensors(path)
    assert sorted(back) == ["a", "b"]
    for key, value in state.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value)
        base = back[key]
        while not isinstance(base, np.memmap) and base.base is not None:
            base = base.base
        assert isinstance(base, np.memmap), f"{key} is a copy, not a view of the file"
    back["b"][0, 0] = 99.0  # copy-on-write: the model may write, the file never changes
    assert path.read_bytes() == before


def _raw_safetensors(path, header: dict, data: bytes) -> None:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)


def test_safetensors_reader_widens_bf16_and_names_bad_files(tmp_path):
    bf16 = tmp_path / "bf16.safetensors"
    # bfloat16 1.0 = 0x3F80, 2.0 = 0x4000 (the top halves of the float32 bit patterns)
    _raw_safetensors(bf16, {"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}},
                     b"\x80\x3f\x00\x40")  # fmt: skip
    out = read_safetensors(bf16)["w"]
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0]
    f8 = tmp_path / "f8.safetensors"
    _raw_safetensors(f8, {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0")
    with pytest.raises(WeightLoadError, match=r"f8.safetensors: tensor 'w' has unsupported dtype"):
        read_safetensors(f8)
    short = tmp_path / "short.safetensors"
    _raw_safetensors(
        short, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8
    )
    with pytest.raises(WeightLoadError, match="short.safetensors: not a readable safetensors"):
        read_safetensors(short)
    with pytest.raises(ValueError, match="x: dtype complex64 cannot be written"):
        write_safetensors({"x": np.zeros(2, np.complex64)}, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()
