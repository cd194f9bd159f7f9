"""Generation shared by both backends (numpy only), in three parts:

* :mod:`~blip_core.generation.settings` -- ``GenerationConfig`` and how a call resolves it;
* :mod:`~blip_core.generation.search` -- greedy / sampling / beam search over a backend's
  :class:`DecoderSession` (with the logits processors of
  :mod:`~blip_core.generation.processors`);
* :mod:`~blip_core.generation.prompts` -- decoder prompts for captioning and VQA, sequence scores.

Every name is re-exported here, so ``from blip_core.generation import X`` keeps working.
"""

from blip_core.generation.processors import (
    apply_processors,
    apply_warpers,
    log_softmax,
    softmax,
)
from blip_core.generation.prompts import (
    answer_prompts,
    caption_prompts,
    check_attention_mask,
    left_align,
    sequence_log_likelihood,
    strip_prompt,
)
from blip_core.generation.search import (
    _NEG,
    DecoderSession,
    _beam_search,
    _greedy_or_sample,
    _limits,
    _topk_indices,
    generate_ids,
    length_limits,
    pad_sequences,
)
from blip_core.generation.settings import (
    GENERATION_CONFIG_NAME,
    ORIGINAL_BLIP_CAPTION,
    ORIGINAL_BLIP_PROMPT,
    GenerationConfig,
    blip_generation_config,
    resolve_generation_config,
)

# The private names of the single-module version, for code that imported them.
_log_softmax = log_softmax
_softmax = softmax

__all__ = [
    "GENERATION_CONFIG_NAME",
    "ORIGINAL_BLIP_CAPTION",
    "ORIGINAL_BLIP_PROMPT",
    "DecoderSession",
    "GenerationConfig",
    "answer_prompts",
    "apply_processors",
    "apply_warpers",
    "blip_generation_config",
    "caption_prompts",
    "check_attention_mask",
    "generate_ids",
    "left_align",
    "length_limits",
    "log_softmax",
    "pad_sequences",
    "resolve_generation_config",
    "sequence_log_likelihood",
    "softmax",
    "strip_prompt",
    "_NEG",
    "_beam_search",
    "_greedy_or_sample",
    "_limits",
    "_topk_indices",
]
