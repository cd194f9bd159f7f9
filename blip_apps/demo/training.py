"""Train the three bundled demo BLIP models from scratch, with PyTorch (blip_torch), on CPU.

The library behind ``scripts/train_demo.py`` (:func:`train_demo_models`); it imports torch.

The data are generated scenes of coloured shapes (:mod:`blip_apps.demo.data`); no download is
needed.  :func:`train_demo_models`

1. trains a WordPiece tokenizer (the ``tokenizers`` library, BERT normalizer and pre-tokenizer,
   specials ``[PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC]`` with ids 0-6) on the demo text;
2. trains ``caption`` (:class:`BlipForConditionalGeneration`, LM loss on ``[DEC] caption [SEP]``)
   from random weights;
3. trains ``vqa`` (:class:`BlipForQuestionAnswering`, LM loss on ``[DEC] answer [SEP]`` decoded
   against the image-grounded question), starting from the captioner's image encoder and text
   decoder (both its text encoder and decoder start from the caption decoder), as BLIP fine-tunes
   from a pre-trained model;
4. trains ``retrieval`` (:class:`BlipForImageTextRetrieval`, ITC + ITM losses with hard and edited
   negatives), starting from the VQA model's image encoder and image-grounded text encoder;
5. saves each with ``save_pretrained`` plus the tokenizer files and ``preprocessor_config.json``.

Everything is seeded (``seed``; the vqa and retrieval stages reseed, so
``tasks=("vqa", "retrieval")`` redoes just those stages from the saved caption model) and runs on
``threads`` CPU threads.  The shipped models come from the defaults; their held-out scores and
training times are in the README ("What you get offline").  They predate the fixed-order
vocabulary (see :func:`train_tokenizer`) and the per-stage seeds, so a rerun gives equivalent,
not bit-identical, models.  A training-only auxiliary head (per-patch shape labels, not saved)
and a 2-D sin-cos start for the position embeddings make the small ViT learn shapes in thousands
rather than tens of thousands of steps.  Usage::

    python scripts/train_demo.py                      # writes blip_apps/demo/models/{caption,vqa,retrieval}
    python scripts/train_demo.py --out /tmp/demo --steps-caption 200   # a quick smoke run
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

from blip_apps.demo import MODELS_DIR, TASKS, data
from blip_apps.demo.losses import (
    ITC_TEMPERATURE,
    AuxVisionHead,
    Batches,
    caption_loss,
    retrieval_loss,
    vqa_loss,
)
from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_core.image_processing import BlipImageProcessor
from blip_core.tokenization import BlipTokenizer
from blip_torch import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
MAX_TEXT_LENGTH = 32


# ---- tokenizer, processor, config -------------------------------------------------------------


def train_tokenizer() -> BlipTokenizer:
    """A WordPiece tokenizer over the demo corpus in which every demo word is one token.

    The ``tokenizers`` WordPiece trainer supplies the alphabet and continuation pieces, but the
    ids it hands out vary from run to run (ties between equally frequent merges), so the vocabulary
    is rebuilt in a fixed order: the specials (ids 0-6), then the trainer's single characters and
    ``##`` characters, then every corpus word, each group sorted.
    """
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=256, special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False
    )
    corpus = data.corpus()
    backend.train_from_iterator(corpus, trainer)
    learned = set(backend.get_vocab()) - set(SPECIAL_TOKENS)
    chars = sorted(t for t in learned if len(t) == 1)
    pieces = sorted(t for t in learned if t.startswith("##") and len(t) == 3)
    words = sorted({w for line in corpus for w in line.replace("?", " ?").split()} - set(chars))
    vocab = SPECIAL_TOKENS + chars + pieces + words
    tokenizer = BlipTokenizer.from_vocab(vocab, model_max_length=MAX_TEXT_LENGTH)
    for text in corpus:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != len(text.replace("?", " ?").split()):
            raise AssertionError(f"a demo word was split into pieces: {text!r}")
    return tokenizer


def image_processor() -> BlipImageProcessor:
    size = data.IMAGE_SIZE
    return BlipImageProcessor(size={"height": size, "width": size}, processor_class="BlipProcessor")


def make_config(tokenizer: BlipTokenizer, patch_size: int = 16) -> BlipConfig:
    vision = BlipVisionConfig(
        hidden_size=128,
        intermediate_size=512,
        projection_dim=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=data.IMAGE_SIZE,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    text = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        projection_dim=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    return BlipConfig(
        text_config=text, vision_config=vision, projection_dim=128, image_text_hidden_size=64
    )


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """BERT/ViT-style initialisation (the modules' PyTorch defaults suit neither)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name, param in model.named_parameters():
        if name.endswith("class_embedding"):
            nn.init.trunc_normal_(param, std=std)
        elif name.endswith("position_embedding"):
            with torch.no_grad():
                param.copy_(sincos_positions(param.shape[-1], int((param.shape[1] - 1) ** 0.5)))


def sincos_positions(dim: int, side: int) -> torch.Tensor:
    """``(1, 1 + side**2, dim)`` 2-D sine-cosine positions (MAE's), zero for the class token.

    Random positions of std 0.02 are tiny next to the patch embeddings, so attention starts out
    blind to where patches are and shape recognition (which needs neighbouring patches) stalls for
    thousands of steps; a 2-D sin-cos start gives every patch a distinct, smooth position at once.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(side, dtype=torch.float64)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for grid in (gx.flatten(), gy.flatten()):
        angles = grid[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    table = torch.cat(parts, dim=1).float()  # (side**2, dim)
    return torch.cat([torch.zeros(1, dim), table])[None]


# ---- training loop ----------------------------------------------------------------------------


def train(model, loss_fn, batches, steps, batch_size, lr, log, name, aux_weight=1.0):
    aux = AuxVisionHead(
        model.config.vision_config.hidden_size, model.config.vision_config.patch_size
    )
    init_weights(aux)
    params = list(model.named_parameters()) + list(aux.named_parameters(prefix="aux"))
    decay = [p for n, p in params if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, running = time.time(), None
    for step in range(steps):
        loss, image_embeds, scenes = loss_fn(model, batches, batch_size)
        aux_loss = aux.loss(image_embeds, scenes)
        loss = loss + aux_weight * aux_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach()) - aux_weight * float(aux_loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % 50 == 0 or step == steps - 1:
            log(
                f"{name} step {step + 1}/{steps} loss {value:.4f} (avg {running:.4f}) "
                f"aux {float(aux_loss.detach()):.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {time.time() - start:.0f}s"
            )
    model.eval()
    return time.time() - start


def save(model, tokenizer, processor, directory: Path) -> None:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor.save_pretrained(directory)


def copy_weights(dst: nn.Module, src: nn.Module, prefix_map: dict[str, str]) -> None:
    """Copy ``src`` parameters into ``dst`` under renamed prefixes (``src_prefix -> dst_prefix``)."""
    src_state = src.state_dict()
    dst_state = dst.state_dict()
    copied = 0
    for src_prefix, dst_prefix in prefix_map.items():
        for key, value in src_state.items():
            if key.startswith(src_prefix):
                target = dst_prefix + key[len(src_prefix) :]
                if target in dst_state and dst_state[target].shape == value.shape:
                    dst_state[target] = value.clone()
                    copied += 1
    dst.load_state_dict(dst_state)
    if copied == 0:
        raise AssertionError("copy_weights copied nothing")


def train_demo_models(
    out: str | Path = MODELS_DIR,
    seed: int = data.TRAIN_SEED,
    threads: int = 2,
    steps_caption: int = 4000,
    steps_vqa: int = 2000,
    steps_retrieval: int = 400,
    batch_size: int = 32,
    patch_size: int = 16,
    lr: float = 1e-3,
    finetune_lr: float = 5e-4,
    tasks: Sequence[str] = TASKS,
    init: str | Path | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict[str, float]:
    """Train ``tasks`` (caption, then vqa from it, then retrieval from vqa) and save each under
    ``out/<task>`` (weights, tokenizer, image processor); append the log to
    ``out/train_log.txt`` (and pass each line to ``echo``).

    ``init``: continue every task from the models in this directory.  A task that is not
    trained here comes from ``out`` (so ``tasks=("retrieval",)`` starts from the saved vqa
    model).  Returns the training seconds per task.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks={list(tasks)!r}: unknown {unknown}; expected a subset of {TASKS}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out)
    init = None if init is None else Path(init)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.txt"

    def log(message: str) -> None:
        if echo is not None:
            echo(message)
        with log_path.open("a") as fh:
            fh.write(message + "\n")

    tasks = list(tasks)
    tokenizer = train_tokenizer()
    processor = image_processor()
    config = make_config(tokenizer, patch_size)
    log(f"vocab {len(tokenizer)}; config {json.dumps(config.to_dict(), sort_keys=True)}")
    times = {}

    def load_or_init(cls, task):
        # --init: continue every task from there; otherwise a task that is not retrained here
        # comes from --out (so `--tasks retrieval` starts from the saved vqa model)
        source = init if init is not None else (None if task in tasks else out)
        if source is not None and (source / task).is_dir():
            log(f"{task}: loading {source / task}")
            return cls.from_pretrained(source / task), True
        model = cls(config.copy())
        init_weights(model)
        return model, False

    caption_model, _ = load_or_init(BlipForConditionalGeneration, "caption")
    if "caption" in tasks:
        batches = Batches(tokenizer, processor, seed, "caption")
        times["caption"] = train(
            caption_model, caption_loss, batches, steps_caption, batch_size, lr,
            log, "caption",
        )  # fmt: skip
        save(caption_model, tokenizer, processor, out / "caption")

    # each later stage has its own seed, so `--tasks vqa,retrieval` reproduces a full run's stages
    torch.manual_seed(seed * 1000 + TASKS.index("vqa"))
    vqa_model, resumed = load_or_init(BlipForQuestionAnswering, "vqa")
    if "vqa" in tasks:
        if not resumed:
            copy_weights(
                vqa_model,
                caption_model,
                {
                    "vision_model.": "vision_model.",
                    "text_decoder.bert.": "text_encoder.",
                    "text_decoder.": "text_decoder.",
                },
            )
        batches = Batches(tokenizer, processor, seed, "vqa")
        times["vqa"] = train(
            vqa_model, vqa_loss, batches, steps_vqa, batch_size, finetune_lr,
            log, "vqa",
        )  # fmt: skip
        save(vqa_model, tokenizer, processor, out / "vqa")

    if "retrieval" in tasks:
        torch.manual_seed(seed * 1000 + TASKS.index("retrieval"))
        model, resumed = load_or_init(BlipForImageTextRetrieval, "retrieval")
        if not resumed:
            copy_weights(
                model,
                vqa_model,
                {"vision_model.": "vision_model.", "text_encoder.": "text_encoder."},
            )
        batches = Batches(tokenizer, processor, seed, "retrieval")
        times["retrieval"] = train(
            model, retrieval_loss, batches, steps_retrieval, batch_size,
            finetune_lr, log, "retrieval",
        )  # fmt: skip
        save(model, tokenizer, processor, out / "retrieval")
    log(f"training time (s): {json.dumps({k: round(v) for k, v in times.items()})}")

    return times


__all__ = [
    "ITC_TEMPERATURE",
    "MAX_TEXT_LENGTH",
    "SPECIAL_TOKENS",
    "image_processor",
    "make_config",
    "train",
    "train_demo_models",
    "train_tokenizer",
]
