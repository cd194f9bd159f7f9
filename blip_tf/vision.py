"""The BLIP ViT image encoder (Keras 3).  Layer names equal the transformers attribute names.

Pixels come in as ``(B, 3, H, W)`` like the PyTorch side and are transposed to NHWC for the
patch convolution.  Weights are created in ``build()``, which each model's constructor runs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from blip_core.config import BlipVisionConfig
from blip_core.weights.resize import bicubic_matrix as bicubic_resize_matrix
from blip_tf.checkpoint import PreTrainedMixin, dense, layer_norm, unpack_inputs, weight_init
from blip_tf.outputs import BaseModelOutputWithPooling


class BlipVisionEmbeddings(keras.layers.Layer):
    """Patchify with a stride-``patch`` convolution, prepend the class token, add positions."""

    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embed_dim = config.hidden_size
        self.patch_size = config.patch_size
        self.num_positions = config.num_positions
        self.patch_embedding = keras.layers.Conv2D(
            self.embed_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            data_format="channels_last",
            kernel_initializer=weight_init(
                keras.initializers.RandomNormal(stddev=config.initializer_range)
            ),
            name="patch_embedding",
        )

    def build(self, input_shape=None):
        init = weight_init(keras.initializers.TruncatedNormal(stddev=self.config.initializer_range))
        self.class_embedding = self.add_weight(
            shape=(1, 1, self.embed_dim), initializer=init, name="class_embedding"
        )
        self.position_embedding = self.add_weight(
            shape=(1, self.num_positions, self.embed_dim),
            initializer=init,
            name="position_embedding",
        )
        self.patch_embedding.build((None, None, None, 3))

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int):
        """Bicubically resize the patch position grid for a ``height x width`` input (exactly
        PyTorch's bicubic, as fixed resize matrices: the sizes must be static)."""
        num_positions = self.num_positions - 1
        if num_patches == num_positions and height == width:
            return self.position_embedding
        if not isinstance(height, int) or not isinstance(width, int):
            raise ValueError("interpolate_pos_encoding needs a static image height and width")
        side = int(num_positions**0.5)
        rows = bicubic_resize_matrix(side, height // self.patch_size).astype(np.float32)
        cols = bicubic_resize_matrix(side, width // self.patch_size).astype(np.float32)
        grid = ops.reshape(self.position_embedding[0, 1:], (side, side, self.embed_dim))
        grid = ops.einsum("ih,hwd->iwd", rows, grid)
        grid = ops.einsum("jw,iwd->ijd", cols, grid)  # (H', W', D)
        patch_pos = ops.reshape(grid, (1, -1, self.embed_dim))
        return ops.concatenate([self.position_embedding[:, :1], patch_pos], axis=1)

    def call(self, pixel_values, interpolate_pos_encoding: bool = False):
        """``pixel_values`` ``(B, 3, H, W)`` -> ``(B, 1 + N, D)``."""
        batch, _, height, width = ops.shape(pixel_values)
        patches = self.patch_embedding(ops.transpose(pixel_values, (0, 2, 3, 1)))  # (B, h, w, D)
        patches = ops.reshape(patches, (batch, -1, self.embed_dim))  # row-major, as torch flatten
        cls = ops.broadcast_to(
            ops.cast(self.class_embedding, patches.dtype), (batch, 1, self.embed_dim)
        )
        embeddings = ops.concatenate([cls, patches], axis=1)
        length = embeddings.shape[1]
        if interpolate_pos_encoding:
            positions = self.interpolate_pos_encoding(length - 1, height, width)
        else:
            if isinstance(length, int) and length > self.num_positions:
                raise ValueError(
                    f"pixel_values of {height}x{width} give {length - 1} patches, the model has "
                    f"positions for {self.num_positions - 1} "
                    f"({self.config.image_size}x{self.config.image_size}); resize the image or "
                    "pass interpolate_pos_encoding=True"
                )
            positions = self.position_embedding[:, :length]
        return embeddings + ops.cast(positions, embeddings.dtype)


class BlipAttention(keras.layers.Layer):
    """Multi-head self-attention with a fused ``qkv`` projection and no mask."""

    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = keras.layers.Dropout(config.attention_dropout, name="dropout")
        self.qkv = dense(3 * self.embed_dim, 0.02, "qkv")
        self.projection = dense(self.embed_dim, 0.02, "projection")

    def build(self, input_shape=None):
        self.qkv.build((None, None, self.embed_dim))
        self.projection.build((None, None, self.embed_dim))

    def call(self, hidden_states, output_attentions: bool = False, training=None):
        """``(B, T, D)`` -> ``((B, T, D), probs (B, heads, T, T) or None)``."""
        batch, length = ops.shape(hidden_states)[:2]
        qkv = ops.reshape(
            self.qkv(hidden_states), (batch, length, 3, self.num_heads, self.head_dim)
        )
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        query, key, value = qkv[0], qkv[1], qkv[2]  # each (B, heads, T, head_dim)
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2))
        # scale and softmax in float32 under a bfloat16/float16 policy (no-ops in float32)
        scores = ops.cast(scores, "float32") * self.scale
        probs = ops.cast(ops.softmax(scores, axis=-1), value.dtype)
        context = ops.matmul(self.dropout(probs, training=training), value)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, self.embed_dim))
        return self.projection(context), (probs if output_attentions else None)


class BlipMLP(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.fc1 = dense(config.intermediate_size, 0.02, "fc1")
        self.fc2 = dense(config.hidden_size, 0.02, "fc2")

    def build(self, input_shape=None):
        self.fc1.build((None, None, self.hidden_size))
        self.fc2.build((None, None, self.intermediate_size))

    def call(self, hidden_states):
        return self.fc2(ops.gelu(self.fc1(hidden_states), approximate=False))  # exact erf GELU


class BlipEncoderLayer(keras.layers.Layer):
    """Pre-LN transformer block."""

    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.self_attn = BlipAttention(config, name="self_attn")
        self.layer_norm1 = layer_norm(config.layer_norm_eps, "layer_norm1")
        self.mlp = BlipMLP(config, name="mlp")
        self.layer_norm2 = layer_norm(config.layer_norm_eps, "layer_norm2")

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.self_attn.build(shape)
        self.layer_norm1.build(shape)
        self.mlp.build(shape)
        self.layer_norm2.build(shape)

    def call(self, hidden_states, output_attentions: bool = False, training=None):
        attn, probs = self.self_attn(
            self.layer_norm1(hidden_states), output_attentions=output_attentions, training=training
        )
        hidden_states = hidden_states + attn
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, probs


class BlipEncoder(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.layers = [
            BlipEncoderLayer(config, name=f"layers_._{i}") for i in range(config.num_hidden_layers)
        ]

    def build(self, input_shape=None):
        for layer in self.layers:
            layer.build(input_shape)

    def call(
        self,
        inputs_embeds,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training=None,
    ):
        hidden_states = inputs_embeds
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attn = () if output_attentions else None
        for layer in self.layers:
            hidden_states, probs = layer(
                hidden_states, output_attentions=output_attentions, training=training
            )
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                all_attn = all_attn + (probs,)
        return hidden_states, all_hidden, all_attn


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipVisionModel(PreTrainedMixin, keras.Model):
    """ViT encoder; ``last_hidden_state`` is post-LayerNormed, the pooler re-applies it to CLS."""

    config_class = BlipVisionConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BlipVisionConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = BlipVisionEmbeddings(config, name="embeddings")
        self.encoder = BlipEncoder(config, name="encoder")
        self.post_layernorm = layer_norm(config.layer_norm_eps, "post_layernorm")
        self.build()

    def build(self, input_shape=None):
        shape = (None, None, self.config.hidden_size)
        self.embeddings.build()
        self.encoder.build(shape)
        self.post_layernorm.build(shape)

    @unpack_inputs
    def call(
        self,
        pixel_values=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training=None,
    ) -> BaseModelOutputWithPooling:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        if len(pixel_values.shape) != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                f"pixel_values must have shape (batch, 3, height, width), got {tuple(pixel_values.shape)}"
            )
        hidden = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden, all_hidden, all_attn = self.encoder(
            hidden,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
            training=training,
        )
        last_hidden_state = self.post_layernorm(hidden)
        pooled = self.post_layernorm(last_hidden_state[:, 0, :])
        out = BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_attn,
        )
        return out if return_dict is not False else out.to_tuple()

    def get_input_embeddings(self) -> BlipVisionEmbeddings:
        return self.embeddings

    def compiled_forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        """Inference forward through XLA: ``(last_hidden_state, pooler_output)``.

        This is :meth:`call` itself (``training=False``) traced inside one
        ``tf.function(jit_compile=True)`` per image size (any batch size), built on first use
        and kept on the model: no second forward, the numbers are those of :meth:`call` up to
        XLA's float rounding.
        """
        pixel_values = tf.convert_to_tensor(pixel_values, tf.float32)
        if len(pixel_values.shape) != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                "pixel_values must have shape (batch, 3, height, width), got "
                f"{tuple(pixel_values.shape)}"
            )
        key = (
            int(pixel_values.shape[2]),
            int(pixel_values.shape[3]),
            bool(interpolate_pos_encoding),
        )
        functions = self.__dict__.get("_blip_compiled")
        if functions is None:
            functions = {}
            object.__setattr__(self, "_blip_compiled", functions)
        if key not in functions:
            spec = tf.TensorSpec([None, 3, key[0], key[1]], tf.float32)

            @tf.function(jit_compile=True, input_signature=[spec])
            def forward(pixels):
                out = self(pixels, interpolate_pos_encoding=key[2], training=False)
                return out.last_hidden_state, out.pooler_output

            functions[key] = forward
        return functions[key](pixel_values)


__all__ = [
    "BlipAttention",
    "BlipEncoder",
    "BlipEncoderLayer",
    "BlipMLP",
    "BlipVisionEmbeddings",
    "BlipVisionModel",
    "bicubic_resize_matrix",
]
