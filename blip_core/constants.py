"""Constants that decide numerics, shared by both backends so they cannot drift."""

# BERT-style additive self-attention mask: (1 - mask) * SELF_ATTENTION_MASK_VALUE.
SELF_ATTENTION_MASK_VALUE = -10000.0
# Cross-attention (encoder) masks use the dtype's most negative finite value, as transformers'
# ``invert_attention_mask`` does: (1 - mask) * finfo(dtype).min.  float32 value given here.
CROSS_ATTENTION_MASK_VALUE_FP32 = -3.4028234663852886e38
# Special token ids of the released BLIP vocabularies (bert-base-uncased + two added tokens).
DEC_TOKEN_ID = 30522  # [DEC], decoder BOS
ENC_TOKEN_ID = 30523  # [ENC], image-grounded encoding marker of the original code
SEP_TOKEN_ID = 102
PAD_TOKEN_ID = 0
IGNORE_INDEX = -100  # labels ignored by the losses
