"""Write tiny hub-layout directories with transformers 4.57.6 and record its outputs.

    python scripts/make_reference_fixtures.py [OUT_DIR]   (default tests/fixtures/reference)

Each ``OUT_DIR/<case>/`` holds what transformers' ``save_pretrained`` wrote (config.json,
model.safetensors), a tiny BERT vocabulary with BLIP's [DEC]/[ENC] tokens and the processor
files, and ``expected.npz``: the inputs (``in.<name>``) and the reference's outputs
(``out.<path>``).  Tests compare our backends against these files without transformers installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("USE_TF", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.helpers import TINY_TEXT, TINY_VISION, flatten_outputs  # noqa: E402
from tests.reference import build_reference  # noqa: E402
from tests.torch.cases import case_kwargs, to_torch  # noqa: E402

FIXTURE_CASES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
    "blip_model": "BlipModel",
}

WORDS = (
    "a an the picture photo of cat dog red blue green circle square triangle small large "
    "left right on in with and what is color how many shapes there are two three one yes no "
    "sitting beach woman man table car tree house sky water"
).split()


def tiny_vocab() -> list[str]:
    """99 tokens: BERT specials at their usual relative order, words, word pieces, [DEC], [ENC]."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,?!'")
    vocab += WORDS
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    for piece in pieces:
        if len(vocab) >= TINY_TEXT["vocab_size"] - 2:
            break
        if piece not in vocab:
            vocab.append(piece)
    vocab += ["[DEC]", "[ENC]"]
    assert len(vocab) == TINY_TEXT["vocab_size"], len(vocab)
    assert vocab.index("[DEC]") == TINY_TEXT["bos_token_id"]
    assert vocab.index("[SEP]") == TINY_TEXT["sep_token_id"]
    return vocab


def write_processor(directory: Path) -> None:
    from transformers import BertTokenizerFast, BlipImageProcessor, BlipProcessor

    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), bos_token="[DEC]", model_max_length=64
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)


def main(out_dir: Path) -> None:
    import torch

    for case, class_name in FIXTURE_CASES.items():
        directory = out_dir / case
        directory.mkdir(parents=True, exist_ok=True)
        model = build_reference(class_name, seed=len(case))
        model.save_pretrained(directory)
        write_processor(directory)
        kwargs = case_kwargs(case, TINY_TEXT, TINY_VISION)
        with torch.no_grad():
            outputs = model(**to_torch(kwargs))
        arrays = {f"in.{k}": v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        flags = {f"flag.{k}": np.asarray(v) for k, v in kwargs.items() if isinstance(v, bool)}
        arrays.update(flags)
        arrays.update({f"out.{k}": v for k, v in flatten_outputs(outputs).items()})
        np.savez_compressed(directory / "expected.npz", **arrays)
        print(f"wrote {directory} ({len(arrays)} arrays)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "reference")
