"""Our fix of the reference's cross-attention masking: padded encoder states are not attended."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"


def _vqa_loss_per_row(model, question_ids, question_mask, pixels, answers):
    return model(
        input_ids=question_ids,
        attention_mask=question_mask,
        pixel_values=pixels,
        labels=answers,
    ).loss


def test_padded_question_batch_equals_each_question_alone():
    model = blip_torch.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa")
    inp = make_inputs(batch=3, length=9, lengths=[9, 4, 6])
    ids, mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"])
    answers = torch.tensor([[97, 10, 11, 3]] * 3)
    with torch.no_grad():
        vision = model.vision_model(pixels).last_hidden_state
        batched = model.text_encoder(
            input_ids=ids, attention_mask=mask, encoder_hidden_states=vision
        ).last_hidden_state
        dec_batched = model.text_decoder(
            input_ids=answers, encoder_hidden_states=batched, encoder_attention_mask=mask
        ).logits
        for row, n in enumerate([9, 4, 6]):
            alone = model.text_encoder(
                input_ids=ids[row : row + 1, :n], encoder_hidden_states=vision[row : row + 1]
            ).last_hidden_state
            dec_alone = model.text_decoder(
                input_ids=answers[row : row + 1], encoder_hidden_states=alone
            ).logits
            assert torch.allclose(batched[row, :n], alone[0], atol=1e-5)
            assert torch.allclose(dec_batched[row], dec_alone[0], atol=1e-5)
        # The reference behaviour (switch on) lets the answer attend to question padding.
        model.config.text_config.ignore_encoder_attention_mask = True
        dec_ref = model.text_decoder(
            input_ids=answers, encoder_hidden_states=batched, encoder_attention_mask=mask
        ).logits
    assert not torch.allclose(dec_ref[1], dec_batched[1], atol=1e-4)
