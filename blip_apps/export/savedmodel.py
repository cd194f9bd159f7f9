"""``blip export --format savedmodel``: greedy captioning as a TensorFlow SavedModel.

The SavedModel is built from a ``blip_tf.BlipForConditionalGeneration``'s own layers: the
vision model's call, each decoder layer's cross-attention ``project_key_value`` (once per
image), and the text decoder's call with ``past_key_values`` (one token per step) inside a
``tf.while_loop``.  Plain TensorFlow loads it, without this project::

    loaded = tf.saved_model.load(OUT_DIR)            # or OUT_DIR/1 with --serving
    out = loaded.signatures["serving_default"](
        pixel_values=tf.constant(pixels),            # float32 (B, 3, H, W), processor output
        max_new_tokens=tf.constant(20), min_new_tokens=tf.constant(5))
    out["sequences"]                                 # int64 (B, T): [DEC] ... [SEP], [PAD]-padded

``sequences`` are the ids ``blip_tf``'s ``generate(pixel_values, max_new_tokens=...,
min_new_tokens=...)`` returns (greedy; the model's ``generation_config.json`` ``min_length``
applies too; generation stops at the position table).  With ``serving_layout=True`` the model is
written to ``OUT_DIR/1/`` -- the versioned layout TF Serving expects
(``tensorflow_model_server --model_base_path=OUT_DIR --model_name=blip``).
``config.json``, tokenizer and preprocessor files are copied to ``OUT_DIR``.  Verification: the
loaded SavedModel's ids must equal ``blip_tf``'s ``generate`` on a probe batch, else nothing is
left at ``OUT_DIR``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from blip_apps.export.onnx_export import SIDE_FILES, ExportError, _publish, check_out_dir
from blip_apps.export.verify import VerificationError
from blip_core.config import BlipConfig, load_config
from blip_core.generation import blip_generation_config
from blip_core.hub import resolve_model_dir
from blip_core.loading import write_config

# generation settings the serving loop does not implement: refuse rather than differ
_UNSUPPORTED = {"repetition_penalty": 1.0, "num_beams": 1, "do_sample": False}


def _settings(model) -> tuple[list[int], int, int]:
    """``(eos ids, pad id, min_length)`` of the model's greedy generation settings."""
    config = blip_generation_config(
        getattr(model, "generation_config", None), model.config.text_config, None, {}
    )
    for name, default in _UNSUPPORTED.items():
        if getattr(config, name) != default:
            raise ExportError(
                f"generation_config.json sets {name}={getattr(config, name)!r}; the SavedModel's "
                f"greedy loop implements {name}={default!r} only"
            )
    return list(config.eos_ids), int(config.pad_token_id), int(config.min_length or 0)


def build_module(model):
    """A ``tf.Module`` whose ``serve`` is the ``serving_default`` function (see module doc)."""
    import tensorflow as tf

    text = model.config.text_config
    vision = model.config.vision_config
    eos_ids, pad_id, min_length = _settings(model)
    bos_id, max_positions = int(text.bos_token_id), int(text.max_position_embeddings)
    heads = text.num_attention_heads
    head_dim = text.hidden_size // heads
    size = vision.image_size

    class CaptionServing(tf.Module):
        def __init__(self, model):
            super().__init__(name="blip_caption")
            self.model = model

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, 3, size, size), tf.float32, name="pixel_values"),
                tf.TensorSpec((), tf.int32, name="max_new_tokens"),
                tf.TensorSpec((), tf.int32, name="min_new_tokens"),
            ]
        )
        def serve(self, pixel_values, max_new_tokens, min_new_tokens):
            decoder = self.model.text_decoder
            states = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
            batch = tf.shape(states)[0]
            layers = decoder.bert.encoder.layer
            cross = [layer.crossattention.self.project_key_value(states) for layer in layers]
            enc_mask = tf.ones(tf.shape(states)[:2], tf.int32)
            steps = tf.minimum(tf.maximum(max_new_tokens, 0), max_positions - 1)
            empty = tf.zeros((batch, heads, 0, head_dim), states.dtype)
            past0 = tuple(t for _ in layers for t in (empty, empty))
            eos = tf.constant(eos_ids, tf.int64)
            vocab = text.vocab_size
            eos_hot = tf.reduce_any(tf.equal(tf.range(vocab, dtype=tf.int64)[:, None], eos), 1)

            def cond(i, token, finished, out, past):
                return tf.logical_and(i < steps, tf.logical_not(tf.reduce_all(finished)))

            def body(i, token, finished, out, past):
                pkv = tuple(
                    (past[2 * j], past[2 * j + 1], cross[j][0], cross[j][1])
                    for j in range(len(layers))
                )
                result = decoder(
                    input_ids=token[:, None],
                    attention_mask=tf.ones((batch, i + 1), tf.int32),
                    position_ids=tf.fill((batch, 1), i),
                    encoder_attention_mask=enc_mask,
                    past_key_values=pkv,
                    use_cache=True,
                )
                logits = result.logits[:, -1, :]
                # eos forbidden before min_new_tokens new tokens / min_length tokens in total
                forbid = tf.logical_or(i < min_new_tokens, i + 1 < min_length)
                logits = tf.where(
                    tf.logical_and(forbid, eos_hot)[None, :], tf.constant(-np.inf, logits.dtype),
                    logits,
                )  # fmt: skip
                nxt = tf.argmax(logits, axis=-1, output_type=tf.int64)
                nxt = tf.where(finished, tf.constant(pad_id, tf.int64), nxt)
                finished = tf.logical_or(finished, tf.reduce_any(nxt[:, None] == eos[None], 1))
                presents = tuple(t for layer in result.past_key_values for t in layer[:2])
                return i + 1, nxt, finished, out.write(i, nxt), presents

            bos = tf.fill((batch,), tf.constant(bos_id, tf.int64))
            shape = tf.TensorShape([None, heads, None, head_dim])
            n, _, _, out, _ = tf.while_loop(
                cond,
                body,
                (
                    tf.constant(0),
                    bos,
                    tf.zeros((batch,), tf.bool),
                    tf.TensorArray(tf.int64, size=0, dynamic_size=True),
                    past0,
                ),  # fmt: skip
                shape_invariants=(
                    tf.TensorShape([]),
                    tf.TensorShape([None]),
                    tf.TensorShape([None]),
                    tf.TensorShape(None),
                    tuple(shape for _ in past0),
                ),  # fmt: skip
            )
            tokens = tf.cond(
                n > 0,
                lambda: tf.transpose(out.stack()),
                lambda: tf.zeros((batch, 0), tf.int64),
            )
            return {"sequences": tf.concat([bos[:, None], tokens], axis=1)}

    return CaptionServing(model)


def _verify(model, path: Path) -> None:
    import tensorflow as tf

    vision = model.config.vision_config
    pixels = (
        np.random.default_rng(0)
        .standard_normal((2, 3, vision.image_size, vision.image_size))
        .astype(np.float32)
    )
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    for max_new, min_new in ((8, 0), (6, 4)):
        got = serve(
            pixel_values=tf.constant(pixels),
            max_new_tokens=tf.constant(max_new),
            min_new_tokens=tf.constant(min_new),
        )["sequences"].numpy()
        expected = np.asarray(
            model.generate(pixels, max_new_tokens=max_new, min_new_tokens=min_new)
        )
        if got.shape != expected.shape or not (got == expected).all():
            raise VerificationError(
                f"verification failed: the SavedModel's greedy ids {got.tolist()} differ from "
                f"blip_tf generate's {expected.tolist()} (max_new_tokens={max_new}, "
                f"min_new_tokens={min_new}); nothing was written"
            )


def export_savedmodel(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    force: bool = False,
    serving_layout: bool = False,
) -> Path:
    """Write the greedy-captioning SavedModel of the captioning model in ``model_dir``.

    Returns the SavedModel directory (``out_dir``, or ``out_dir/1`` with ``serving_layout``).
    Raises :class:`~blip_apps.export.onnx_export.ExportError` for a non-captioning model or an
    existing ``out_dir`` without ``force``, and :class:`VerificationError` when the loaded
    SavedModel's ids differ from ``blip_tf``'s ``generate``; nothing is left at ``out_dir`` then.
    """
    import tensorflow as tf

    import blip_tf
    from blip_apps.export.onnx_export import model_class_name

    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    directory = resolve_model_dir(model_dir)
    config = load_config(BlipConfig, directory)
    name = model_class_name(directory, config)
    if name != "BlipForConditionalGeneration":
        raise ExportError(
            f"{directory}: --format savedmodel exports captioning models "
            f"(BlipForConditionalGeneration); this is a {name} (use --format onnx)"
        )
    model = blip_tf.BlipForConditionalGeneration.from_pretrained(directory)
    module = build_module(model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        target = tmp / "1" if serving_layout else tmp
        signature = module.serve.get_concrete_function()
        tf.saved_model.save(module, str(target), signatures={"serving_default": signature})
        _verify(model, target)
        write_config(model.config, name, tmp)
        for side in SIDE_FILES:
            if (directory / side).is_file():
                shutil.copyfile(directory / side, tmp / side)
        check_out_dir(out_dir, force)
        _publish(tmp, out_dir, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "1" if serving_layout else out_dir


__all__ = ["build_module", "export_savedmodel"]
