"""Loading behaviour: tied weights, old file layouts, sub-models, save round trips, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from blip_core import BlipConfig  # noqa: E402
from blip_core.weights import WeightLoadError, read_checkpoint, write_safetensors  # noqa: E402
from tests.helpers import compare_outputs, make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"


@pytest.fixture()
def caption_dir(tmp_path) -> Path:
    target = tmp_path / "caption"
    shutil.copytree(FIXTURES / "caption", target)
    return target


def _caption_outputs(model):
    inp = make_inputs(batch=2, length=6)
    with torch.no_grad():
        return model(
            pixel_values=torch.from_numpy(inp["pixel_values"]),
            input_ids=torch.from_numpy(inp["input_ids"]),
            attention_mask=torch.from_numpy(inp["attention_mask"]),
            labels=torch.from_numpy(inp["labels"]),
        )


def test_lm_head_is_tied_to_word_embeddings(caption_dir):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)
    dec = model.text_decoder
    assert dec.cls.predictions.decoder.weight is dec.bert.embeddings.word_embeddings.weight
    state = read_checkpoint(caption_dir)
    assert "text_decoder.cls.predictions.decoder.weight" not in state  # 4.57 omits it
    np.testing.assert_array_equal(
        dec.cls.predictions.decoder.weight.detach().numpy(),
        state["text_decoder.bert.embeddings.word_embeddings.weight"],
    )


def test_older_file_with_explicit_tied_keys_loads_the_same(caption_dir, tmp_path):
    """Older hub files carry decoder.weight and decoder.bias explicitly."""
    state = read_checkpoint(caption_dir)
    state["text_decoder.cls.predictions.decoder.weight"] = state[
        "text_decoder.bert.embeddings.word_embeddings.weight"
    ].copy()
    state["text_decoder.cls.predictions.decoder.bias"] = state[
        "text_decoder.cls.predictions.bias"
    ].copy()
    state["text_decoder.bert.embeddings.position_ids"] = np.arange(64)[None]
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(caption_dir / "config.json", old / "config.json")
    write_safetensors(state, old / "model.safetensors")
    a = _caption_outputs(blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir))
    b = _caption_outputs(blip_torch.BlipForConditionalGeneration.from_pretrained(old))
    compare_outputs(b, a, atol=0.0)


def test_disagreeing_tied_copy_is_an_error(caption_dir, tmp_path):
    state = read_checkpoint(caption_dir)
    emb = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    state["text_decoder.cls.predictions.decoder.weight"] = emb + 1.0
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(caption_dir / "config.json", bad / "config.json")
    write_safetensors(state, bad / "model.safetensors")
    with pytest.raises(ValueError, match="decoder.weight differs"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(bad)


def test_pytorch_bin_and_sharded_safetensors(caption_dir, tmp_path):
    reference = _caption_outputs(
        blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)
    )
    state = read_checkpoint(caption_dir)
    # pytorch_model.bin
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(caption_dir / "config.json", bin_dir / "config.json")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, bin_dir / "pytorch_model.bin")
    got = _caption_outputs(blip_torch.BlipForConditionalGeneration.from_pretrained(bin_dir))
    compare_outputs(got, reference, atol=0.0)
    # two safetensors shards + index
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(caption_dir / "config.json", sharded / "config.json")
    keys = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    weight_map = {}
    for name, part in halves.items():
        write_safetensors({k: state[k] for k in part}, sharded / name)
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    got = _caption_outputs(blip_torch.BlipForConditionalGeneration.from_pretrained(sharded))
    compare_outputs(got, reference, atol=0.0)


def test_save_pretrained_round_trip(caption_dir, tmp_path):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)
    out = model.save_pretrained(tmp_path / "saved")
    again = blip_torch.BlipForConditionalGeneration.from_pretrained(out)
    compare_outputs(_caption_outputs(again), _caption_outputs(model), atol=0.0)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BlipForConditionalGeneration"]
    assert config["transformers_version"] == "4.57.6"  # unknown keys are kept


def test_vision_model_from_a_task_checkpoint(caption_dir):
    vision = blip_torch.BlipVisionModel.from_pretrained(caption_dir)
    full = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)
    pixels = torch.from_numpy(make_inputs(batch=2)["pixel_values"])
    with torch.no_grad():
        compare_outputs(vision(pixels), full.vision_model(pixels), atol=0.0)


def test_training_step_reduces_loss(caption_dir):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir).train()
    inp = {k: torch.from_numpy(v) for k, v in make_inputs(batch=2, length=6).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(**inp).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_label_smoothing_from_config(caption_dir):
    config = BlipConfig.from_pretrained(caption_dir)
    config.text_config.label_smoothing = 0.1
    smooth = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir, config=config)
    plain = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)
    out_s, out_p = _caption_outputs(smooth), _caption_outputs(plain)
    logits, labels = (
        out_p.logits[:, :-1],
        torch.from_numpy(make_inputs(batch=2, length=6)["labels"])[:, 1:],
    )
    keep = labels != -100
    logp = torch.log_softmax(logits, -1)[keep]
    target = labels[keep]
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    expected = (0.9 * nll - 0.1 * logp.mean(-1)).mean()  # hand-computed smoothed cross-entropy
    assert torch.allclose(out_s.loss, expected, atol=1e-6)
    assert torch.allclose(out_p.loss, nll.mean(), atol=1e-6)


# ----- bad input: one clear error each ---------------------------------------------------------


def test_nonexistent_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path / "nope")


def test_directory_without_weights(caption_dir):
    (caption_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights file found"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)


def test_directory_without_config(caption_dir):
    (caption_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)


def test_truncated_safetensors(caption_dir):
    path = caption_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightLoadError, match="model.safetensors"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)


def test_config_weights_shape_mismatch(caption_dir):
    config = json.loads((caption_dir / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 40
    (caption_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        WeightLoadError, match=r"fc1.weight: checkpoint has \(41, 32\), model expects \(40, 32\)"
    ):
        blip_torch.BlipForConditionalGeneration.from_pretrained(caption_dir)


def test_checkpoint_for_another_task_fails_loudly(caption_dir):
    with pytest.raises(WeightLoadError) as info:
        blip_torch.BlipForImageTextRetrieval.from_pretrained(caption_dir)
    message = str(info.value)
    assert "missing keys" in message and "itm_head.weight" in message
    assert "unexpected keys" in message and "text_decoder." in message


def test_crafted_pickle_is_refused(tmp_path, caption_dir):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (print, ("this ran from a checkpoint",))

    bad = tmp_path / "evil"
    bad.mkdir()
    shutil.copy(caption_dir / "config.json", bad / "config.json")
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps({"model": Exploit()}))
    with pytest.raises(WeightLoadError, match="weights_only=True"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(bad)


def test_invalid_config_values():
    from blip_core import BlipTextConfig, BlipVisionConfig, ConfigError

    with pytest.raises(
        ConfigError, match=r"hidden_size \(30\) must be divisible by .*num_attention_heads \(4\)"
    ):
        BlipTextConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(
        ConfigError, match=r"image_size \(30\) must be divisible by .*patch_size \(8\)"
    ):
        BlipVisionConfig(image_size=30, patch_size=8)
    with pytest.raises(ConfigError, match="num_hidden_layers must be a positive integer, got -1"):
        BlipVisionConfig(num_hidden_layers=-1)
