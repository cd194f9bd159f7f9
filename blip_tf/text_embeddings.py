"""Word + position embeddings of the BLIP text model (Keras 3)."""

from __future__ import annotations

import keras
from keras import ops

from blip_core.config import BlipTextConfig
from blip_tf.checkpoint import layer_norm, weight_init


class BlipTextEmbeddings(keras.layers.Layer):
    """Word + absolute position embeddings, then LayerNorm (BLIP has no token types)."""

    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        init = weight_init(keras.initializers.RandomNormal(stddev=config.initializer_range))
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size,
            config.hidden_size,
            embeddings_initializer=init,
            name="word_embeddings",
        )
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings,
            config.hidden_size,
            embeddings_initializer=init,
            name="position_embeddings",
        )
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, name="dropout")
        self.max_positions = config.max_position_embeddings
        self.pad_token_id = config.pad_token_id

    def build(self, input_shape=None):
        self.word_embeddings.build((None, None))
        self.position_embeddings.build((None, None))
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(
        self,
        input_ids=None,
        position_ids=None,
        inputs_embeds=None,
        past_key_values_length=0,
        training=None,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
            # nn.Embedding(padding_idx=pad) gives the padding row no gradient from lookups.
            is_pad = ops.equal(input_ids, self.pad_token_id)[..., None]
            inputs_embeds = ops.where(is_pad, ops.stop_gradient(inputs_embeds), inputs_embeds)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            if isinstance(length, int) and isinstance(past_key_values_length, int):
                if past_key_values_length + length > self.max_positions:
                    raise ValueError(
                        f"sequence of {past_key_values_length + length} tokens exceeds "
                        f"max_position_embeddings={self.max_positions}"
                    )
            else:
                length = ops.shape(inputs_embeds)[1]
            position_ids = ops.arange(past_key_values_length, past_key_values_length + length)[None]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings), training=training)


__all__ = ["BlipTextEmbeddings"]
