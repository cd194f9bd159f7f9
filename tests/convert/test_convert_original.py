"""Original Salesforce checkpoints -> hub directories: key map, task and size inference, outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from blip_apps.convert import main, probe_inputs  # noqa: E402
from blip_core.config import BlipConfig  # noqa: E402
from blip_core.weights.io import read_safetensors  # noqa: E402
from blip_core.weights.original_map import (  # noqa: E402
    OriginalCheckpointError,
    build_config,
    convert_original_state,
    infer_model_size,
    infer_task,
    interpolate_position_embedding,
    map_original_keys,
)
from tests.convert.common import (  # noqa: E402
    LARGE_LIKE_VISION,
    TASK_CLASSES,
    assert_close,
    build_model,
    leftovers,
    original_state_dict,
    ours_probe,
    reference_config,
    reference_probe,
    save_original,
    to_original_key,
)


@pytest.mark.parametrize(
    ("task", "shape"),
    [(t, "base_like") for t in ("caption", "vqa", "itm")]
    + [("caption", "large_like"), ("itm", "large_like")],
)
def test_original_checkpoint_converts_to_reference_outputs(cases, tmp_path, capsys, task, shape):
    case = cases(task, shape)
    dst = tmp_path / "out"
    assert main([str(case.pth), str(dst), "--to", "pt", "--config", str(case.config)]) == 0
    stdout = capsys.readouterr().out
    assert "momentum encoders" in stdout and "contrastive queues" in stdout
    assert f"task inferred from the heads present: {task}" in stdout
    assert "max|diff|" in stdout and "verified" in stdout
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]
    config = BlipConfig.from_pretrained(dst)
    assert config.extra["architectures"] == [TASK_CLASSES[task]]

    inputs = probe_inputs(config)
    assert_close(ours_probe(dst, task, inputs), reference_probe(case.model, task, inputs), 1e-5)
    # The LM-head weight is written explicitly, so every loader gets it whether or not it ties.
    state = read_safetensors(dst / "model.safetensors")
    if task != "itm":
        emb = state["text_decoder.bert.embeddings.word_embeddings.weight"]
        assert np.array_equal(state["text_decoder.cls.predictions.decoder.weight"], emb)
    assert not any("_m." in k or "queue" in k or k == "temp" for k in state)


def test_vqa_with_a_wider_vision_tower_is_refused(tmp_path, capsys):
    """transformers' VQA decoder cross-attends to the question with the vision width: such a
    model cannot run (transformers' own forward fails), so converting one is a clear error."""
    model = build_model("vqa", LARGE_LIKE_VISION)
    path = save_original(tmp_path / "model_vqa.pth", original_state_dict(model))
    config = tmp_path / "config.json"
    model.config.to_json_file(str(config))
    assert main([str(path), str(tmp_path / "out"), "--to", "pt", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "vision width (48) differs from its text width (32)" in err
    assert leftovers(tmp_path, "out") == []


def test_transformers_loads_converted_directory(cases, tmp_path):
    import transformers

    case = cases("vqa")
    dst = tmp_path / "out"
    assert main([str(case.pth), str(dst), "--to", "pt", "--config", str(case.config)]) == 0
    model, info = transformers.BlipForQuestionAnswering.from_pretrained(
        dst, output_loading_info=True
    )
    assert not any(info.values()), info
    inputs = probe_inputs(BlipConfig.from_pretrained(dst))
    assert_close(
        reference_probe(model.eval(), "vqa", inputs), reference_probe(case.model, "vqa", inputs), 0
    )


def _pretraining_checkpoint(tmp_path):
    """A pre-training-like checkpoint: one vision tower, text encoder + decoder + ITM heads."""
    itm = build_model("itm", seed=3)
    caption = build_model("caption", seed=4)
    caption.vision_model.load_state_dict(itm.vision_model.state_dict())
    state = original_state_dict(itm)
    state.update(
        {k: v for k, v in original_state_dict(caption).items() if k.startswith("text_decoder")}
    )
    path = save_original(tmp_path / "model_base.pth", state)
    config = tmp_path / "config.json"
    itm.config.to_json_file(str(config))
    return path, config, {"itm": itm, "caption": caption}


def test_pretraining_checkpoint_needs_a_task(tmp_path, capsys):
    path, config, models = _pretraining_checkpoint(tmp_path)
    assert main([str(path), str(tmp_path / "auto"), "--to", "pt", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("blip-convert: error:") == 1 and "--task caption" in err
    assert leftovers(tmp_path, "auto") == []
    for task in ("caption", "itm"):
        dst = tmp_path / task
        args = [str(path), str(dst), "--to", "pt", "--config", str(config), "--task", task]
        assert main(args) == 0
        assert "does not use" in capsys.readouterr().out
        inputs = probe_inputs(BlipConfig.from_pretrained(dst))
        ref = reference_probe(models[task], task, inputs)
        assert_close(ours_probe(dst, task, inputs), ref, 1e-5)


def test_task_the_checkpoint_cannot_make_is_an_error(cases, tmp_path, capsys):
    case = cases("caption")
    args = [str(case.pth), str(tmp_path / "o"), "--to", "pt", "--config", str(case.config)]
    assert main([*args, "--task", "vqa"]) == 1
    err = capsys.readouterr().err
    assert "--task vqa needs text_encoder" in err
    assert leftovers(tmp_path, "o") == []


def test_vqa_position_embedding_is_interpolated(tmp_path, capsys):
    """Original VQA models were fine-tuned at 480 px; here a 5x5 grid is resized to 4x4."""
    model = build_model("vqa")
    state = original_state_dict(model)
    table = torch.randn(1, 26, 32, generator=torch.Generator().manual_seed(5))
    state["visual_encoder.pos_embed"] = table
    path = save_original(tmp_path / "model_vqa.pth", state)
    config = tmp_path / "config.json"
    model.config.to_json_file(str(config))

    # The oracle: transformers' own interpolate_pos_encoding on a 40 px model holding the table.
    import transformers

    big = transformers.BlipForQuestionAnswering(reference_config(image_size=40)).eval()
    with torch.no_grad():
        big.vision_model.embeddings.position_embedding.copy_(table)
        expected = big.vision_model.embeddings.interpolate_pos_encoding(
            torch.zeros(1, 17, 32), 32, 32
        )
        model.vision_model.embeddings.position_embedding.copy_(expected)

    dst = tmp_path / "out"
    assert main([str(path), str(dst), "--to", "pt", "--config", str(config)]) == 0
    assert "from 5x5 patches (40 px) to 4x4 (32 px" in capsys.readouterr().out
    got = read_safetensors(dst / "model.safetensors")["vision_model.embeddings.position_embedding"]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    inputs = probe_inputs(BlipConfig.from_pretrained(dst))
    assert_close(ours_probe(dst, "vqa", inputs), reference_probe(model, "vqa", inputs), 1e-5)


@pytest.mark.parametrize("grids", [(30, 24), (14, 24), (5, 4), (3, 7)])
def test_bicubic_interpolation_matches_torch(grids):
    old, new = grids
    rng = np.random.default_rng(0)
    table = rng.standard_normal((1, 1 + old * old, 6)).astype(np.float32)
    got = interpolate_position_embedding(table, 1 + new * new)
    grid = torch.from_numpy(table[:, 1:]).reshape(1, old, old, 6).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(
        grid, size=(new, new), mode="bicubic", align_corners=False
    )
    ref = ref.permute(0, 2, 3, 1).reshape(1, -1, 6).numpy()
    assert got.shape == (1, 1 + new * new, 6) and got.dtype == np.float32
    np.testing.assert_array_equal(got[:, :1], table[:, :1])
    np.testing.assert_allclose(got[:, 1:], ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Inference on shapes only (no real tensors: zero-stride arrays cost no memory).


def _original_shapes(size: str, task: str, image_size: int = 384) -> dict[str, np.ndarray]:
    """Zero-cost arrays with the shapes of an original ``size``/``task`` checkpoint."""
    import blip_torch

    config = build_config(size, task)
    config.vision_config.image_size = image_size
    with torch.device("meta"):
        model = getattr(blip_torch, TASK_CLASSES[task])(config)
    state = {
        to_original_key(k): np.broadcast_to(np.float32(0), tuple(v.shape))
        for k, v in model.state_dict().items()
    }
    if task != "itm":
        emb = state["text_decoder.bert.embeddings.word_embeddings.weight"]
        state["text_decoder.cls.predictions.decoder.weight"] = emb
        state["text_decoder.cls.predictions.decoder.bias"] = state[
            "text_decoder.cls.predictions.bias"
        ]
    return state


@pytest.mark.parametrize(
    ("size", "task"),
    # No large VQA model exists (see test_vqa_with_a_wider_vision_tower_is_refused).
    [("base", "caption"), ("base", "vqa"), ("base", "itm"), ("large", "caption"), ("large", "itm")],
)
def test_size_and_task_inference(size, task):
    image_size = 480 if task == "vqa" else 384  # the original VQA checkpoints
    state = _original_shapes(size, task, image_size)
    mapping = map_original_keys(state)
    shapes = {mapping.renamed[k]: v.shape for k, v in state.items()}
    assert infer_model_size(shapes) == size
    assert infer_task(shapes) == task

    converted = convert_original_state(dict(state))
    assert converted.task == task
    vision = converted.config.vision_config
    expected = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}[size]
    assert (
        vision.hidden_size,
        vision.num_hidden_layers,
        vision.num_attention_heads,
        vision.intermediate_size,
    ) == expected
    assert (vision.image_size, vision.patch_size, vision.layer_norm_eps) == (384, 16, 1e-5)
    text = converted.config.text_config
    assert (text.hidden_size, text.num_attention_heads, text.vocab_size) == (768, 12, 30524)
    assert text.encoder_hidden_size == expected[0]
    assert converted.state["vision_model.embeddings.position_embedding"].shape == (
        1,
        577,
        expected[0],
    )
    assert any("interpolated" in n for n in converted.notes) == (task == "vqa")


def test_unknown_sizes_need_a_config():
    state = _original_shapes("base", "caption")
    state["visual_encoder.cls_token"] = np.zeros((1, 1, 640), np.float32)
    shapes = {map_original_keys([k]).renamed[k]: v.shape for k, v in state.items()}
    with pytest.raises(OriginalCheckpointError, match="--config"):
        infer_model_size(shapes)


def test_task_inference_from_heads():
    vision = ["vision_model.post_layernorm.weight"]
    assert infer_task([*vision, "text_decoder.cls.predictions.bias"]) == "caption"
    assert infer_task([*vision, "text_decoder.cls.predictions.bias", "text_encoder.x"]) == "vqa"
    assert infer_task([*vision, "text_encoder.x", "itm_head.weight"]) == "itm"
    with pytest.raises(OriginalCheckpointError, match="pre-training"):
        infer_task([*vision, "text_encoder.x", "text_decoder.y", "itm_head.weight"])
    with pytest.raises(OriginalCheckpointError, match="cannot tell the task"):
        infer_task([*vision, "text_encoder.x"])


def test_key_map_renames_drops_and_rejects():
    mapping = map_original_keys(
        [
            "visual_encoder.blocks.0.attn.qkv.weight",
            "visual_encoder.blocks.11.attn.proj.bias",
            "visual_encoder.blocks.3.norm2.weight",
            "visual_encoder.patch_embed.proj.weight",
            "visual_encoder.norm.bias",
            "visual_encoder.cls_token",
            "visual_encoder.pos_embed",
            "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
            "itm_head.weight",
            "visual_encoder_m.blocks.0.attn.qkv.weight",
            "text_proj_m.bias",
            "idx_queue",
            "queue_ptr",
            "temp",
        ]
    )
    assert mapping.renamed == {
        "visual_encoder.blocks.0.attn.qkv.weight": "vision_model.encoder.layers.0.self_attn.qkv.weight",
        "visual_encoder.blocks.11.attn.proj.bias": "vision_model.encoder.layers.11.self_attn.projection.bias",
        "visual_encoder.blocks.3.norm2.weight": "vision_model.encoder.layers.3.layer_norm2.weight",
        "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual_encoder.norm.bias": "vision_model.post_layernorm.bias",
        "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
        "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
        "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight": "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
        "itm_head.weight": "itm_head.weight",
    }
    assert sum(len(v) for v in mapping.dropped.values()) == 5
    with pytest.raises(OriginalCheckpointError, match="2 keys .* match no conversion rule") as err:
        map_original_keys(
            [
                "visual_encoder.cls_token",
                "visual_encoder.head.weight",
                "text_encoder.encoder.layer.0.crossattention.self0.query.weight",
            ]
        )
    assert "visual_encoder.head.weight" in str(err.value)


def test_interpolation_rejects_non_square_grids():
    with pytest.raises(ValueError, match="square"):
        interpolate_position_embedding(np.zeros((1, 11, 4), np.float32), 17)
    assert math.isqrt(16) == 4
