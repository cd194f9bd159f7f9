"""``generate_with_scores``: the ids of ``generate`` and the mean token log-probability of the
generated tokens, the same on both backends and equal to a teacher-forced forward pass."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from tests.cross.test_bad_input import BACKENDS, model, pixels  # noqa: E402


def _teacher_forced(m, px, ids, width):
    """Mean log p of tokens ``width .. first [SEP]`` from blip_torch's forward logits."""
    text = m.config.text_config
    with torch.no_grad():
        logits = m(pixel_values=torch.from_numpy(px), input_ids=torch.from_numpy(ids)).logits
    logp = torch.log_softmax(logits.float(), -1).numpy()
    out = []
    for row, seq in enumerate(ids):
        total, count = 0.0, 0
        for t in range(width, len(seq)):
            if seq[t] == text.pad_token_id:
                break
            total += logp[row, t - 1, seq[t]]
            count += 1
            if seq[t] == text.sep_token_id:
                break
        out.append(total / count)
    return np.array(out)


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 3, "num_return_sequences": 2}])
def test_caption_scores(kwargs):
    results = {}
    for backend in BACKENDS:
        m = model(backend, "caption")
        px = pixels(m, batch=2)
        ids, scores = m.generate_with_scores(px, max_new_tokens=6, **kwargs)
        plain = m.generate(px, max_new_tokens=6, **kwargs)
        np.testing.assert_array_equal(np.asarray(ids), np.asarray(plain))
        results[backend] = (np.asarray(ids), np.asarray(scores))
    np.testing.assert_array_equal(results["torch"][0], results["tf"][0])
    np.testing.assert_allclose(results["torch"][1], results["tf"][1], atol=1e-4)
    if not kwargs:  # one row per image: the forward pass scores the same ids
        m = model("torch", "caption")
        expected = _teacher_forced(m, pixels(m, batch=2), results["torch"][0], 1)
        np.testing.assert_allclose(results["torch"][1], expected, atol=1e-4)


def test_answer_scores_equal_across_backends():
    results = {}
    for backend in BACKENDS:
        m = model(backend, "vqa")
        ids, scores = m.generate_with_scores(np.array([[1, 5, 6], [1, 7, 8]]), pixels(m, batch=2),
                                             max_new_tokens=4)  # fmt: skip
        results[backend] = (np.asarray(ids), np.asarray(scores))
        assert np.all(np.asarray(scores) <= 0)
    np.testing.assert_array_equal(results["torch"][0], results["tf"][0])
    np.testing.assert_allclose(results["torch"][1], results["tf"][1], atol=1e-4)
