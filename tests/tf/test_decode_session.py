"""blip_tf's text model decoding over a slot cache (``BlipTextModel.call(cache=SlotCache)``)
against transformers 4.57.6 PyTorch BLIP run over the whole sequence at once.

The slot cache path is what generate compiles; here it runs eagerly (and compiled) with a
prompt written right of empty slots, a masked-out prompt token, two rows per image attending
one image's cross keys/values, and both cross-key layouts.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import blip_tf  # noqa: E402
from blip_tf.cache import SlotCache  # noqa: E402
from blip_tf.generation import project_cross_key_values  # noqa: E402
from tests.helpers import TINY_TEXT  # noqa: E402
from tests.tf.cases import save_reference  # noqa: E402

IMAGES, PER_IMAGE, PROMPT, STEPS, OFFSET, CAPACITY, ENC_LEN = 2, 3, 5, 3, 3, 16, 7
ROWS = IMAGES * PER_IMAGE


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm_head")
    reference = save_reference("BlipTextLMHeadModel", path, seed=8)
    return reference, blip_tf.BlipTextLMHeadModel.from_pretrained(path)


def _inputs(width: int):
    rng = np.random.default_rng(3)
    length = PROMPT + STEPS
    ids = rng.integers(4, TINY_TEXT["vocab_size"] - 3, size=(ROWS, length)).astype(np.int64)
    mask = np.ones((ROWS, length), np.int64)
    mask[1, 2] = 0  # a masked prompt token (exactly zero weight in both)
    mask[2, 1] = 0
    states = rng.standard_normal((IMAGES, ENC_LEN, width)).astype(np.float32)
    return ids, mask, states


def _reference_logits(reference, ids, mask, states):
    expanded = np.repeat(states, PER_IMAGE, axis=0)  # the reference copies the image per row
    with torch.no_grad():
        out = reference(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            encoder_hidden_states=torch.from_numpy(expanded),
            return_dict=True,
        )
    return out.logits.numpy()


def _slot_decode(decoder, ids, mask, states, transposed: bool, compiled: bool):
    """Prefill the prompt at slots OFFSET.., then one token per call; every position's logits."""
    config = decoder.config
    heads = config.num_attention_heads
    shape = (ROWS, heads, CAPACITY, config.hidden_size // heads)
    layers = len(decoder.bert.encoder.layer)
    keys = [tf.zeros(shape) for _ in range(layers)]
    values = [tf.zeros(shape) for _ in range(layers)]
    cross = project_cross_key_values(decoder.bert, states)  # one row per image
    cross_k = [tf.transpose(k, (0, 1, 3, 2)) if transposed else k for k, _ in cross]
    cross_v = [v for _, v in cross]
    bias = tf.zeros((IMAGES, 1, 1, ENC_LEN))

    def forward(ids, positions, slot, key_mask, keys, values):
        cache = SlotCache(keys, values, slot, key_mask, cross_k, cross_v, bias, transposed)
        out = decoder.bert(input_ids=ids, position_ids=positions, cache=cache, training=False)
        logits = decoder.cls(out.last_hidden_state, decoder.get_output_embeddings())
        return logits, [k for k, _ in out.past_key_values], [v for _, v in out.past_key_values]

    if compiled:
        forward = tf.function(forward, jit_compile=True)
    logits = []
    spans = [(0, PROMPT)] + [(t, t + 1) for t in range(PROMPT, PROMPT + STEPS)]
    for start, stop in spans:
        key_mask = np.zeros((ROWS, CAPACITY), np.float32)
        key_mask[:, OFFSET : OFFSET + stop] = mask[:, :stop]
        positions = np.broadcast_to(np.arange(start, stop), (ROWS, stop - start))
        out, keys, values = forward(
            tf.constant(ids[:, start:stop], tf.int32),
            tf.constant(positions, tf.int32),
            tf.constant(OFFSET + start, tf.int32),
            tf.constant(key_mask),
            keys,
            values,
        )
        logits.append(out.numpy())
    return np.concatenate(logits, axis=1), keys


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("transposed", [False, True], ids=["keys_ld", "keys_dl"])
def test_slot_cache_decoding_equals_reference(pair, transposed, compiled):
    reference, ours = pair
    ids, mask, states = _inputs(ours.config.encoder_hidden_size)
    expected = _reference_logits(reference, ids, mask, states)
    got, keys = _slot_decode(ours, ids, mask, states, transposed, compiled)
    assert got.shape == expected.shape == (ROWS, PROMPT + STEPS, TINY_TEXT["vocab_size"])
    keep = mask.astype(bool)  # a masked token's own output is not used by anyone
    np.testing.assert_allclose(got[keep], expected[keep], atol=1e-5)
    # every token's key went to its slot; the slots left of the prompt and right of the last
    # token were never written
    end = OFFSET + PROMPT + STEPS
    for key in keys:
        key = key.numpy()
        assert not key[:, :, :OFFSET].any() and not key[:, :, end:].any()
        assert (np.abs(key[:, :, OFFSET:end]).max(axis=-1) > 0).all()


def test_cache_call_needs_positions(pair):
    _, ours = pair
    cache = SlotCache([], [], 0, np.ones((ROWS, 4), np.float32), [], [], None)
    with pytest.raises(ValueError, match="pass input_ids and position_ids"):
        ours.bert(input_ids=np.ones((ROWS, 1), np.int64), cache=cache)
