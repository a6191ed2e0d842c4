"""The OPT decoder (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models") in
Flax NNX, numerically equal to Hugging Face's ``OPTForCausalLM`` (PyTorch).

What this module matches in ``transformers/models/opt/modeling_opt.py``:

* learned positional embeddings with OPT's offset of 2: position ``p`` reads row ``p + 2``;
  the default positions are ``cumsum(mask) * mask - 1``, so padded slots get position -1
  and read row 1 (:func:`positions_from_mask`);
* ``do_layer_norm_before`` (pre-LN: opt-125m, 1.3b, ...; post-LN: opt-350m), a final layer
  norm only when ``do_layer_norm_before and not _remove_final_layer_norm``;
* ``project_in`` / ``project_out`` (bias-free) when ``word_embed_proj_dim != hidden_size``;
* queries scaled by ``head_dim ** -0.5`` after their projection, softmax in float32,
  layer norms with epsilon 1e-5 (PyTorch's default), ``layer_norm_elementwise_affine``;
* the output head tied to the token embedding (``tie_word_embeddings=True``, the only kind
  of OPT checkpoint published);
* dropout after attention and after the feed-forward block (``dropout``) and on the
  attention weights (``attention_dropout``), none on the embeddings; ``layerdrop`` is ignored.

The key/value cache (:class:`KVCache`) is a fixed-shape buffer of ``max_length`` slots per
sequence, shared write position ``index``; left padding is handled by the attention mask
over slots, so one compiled step serves every decoding position.

Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> config = OPTConfig.preset("tiny", vocab_size=64)
    >>> model = OPTForCausalLM(config, rngs=nnx.Rngs(0))
    >>> ids = jnp.array([[1, 1, 2, 17, 42], [2, 5, 6, 7, 8]])   # row 0 left-padded
    >>> mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    >>> logits, _ = model(ids, mask)
    >>> logits.shape
    (2, 5, 64)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from .._random import fused_bernoulli
from .._validation import ConfigError, require_choice, require_int, require_positive

__all__ = [
    "OPTConfig", "OPTForCausalLM", "KVCache", "init_cache", "functional", "decoder_fns", "positions_from_mask",
    "no_boundary", "POSITION_OFFSET", "ACTIVATIONS", "PRESETS",
]

POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding.offset
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every OPT layer norm
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # transformers' ACT2FN["gelu"] (erf)
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # the tanh approximation
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}

# fields of transformers' OPTConfig this class carries, under their Hugging Face names
# (``remove_final_layer_norm`` is written ``_remove_final_layer_norm`` there)
_HF_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads",
    "max_position_embeddings", "word_embed_proj_dim", "do_layer_norm_before",
    "layer_norm_elementwise_affine", "activation_function", "enable_bias", "pad_token_id",
    "bos_token_id", "eos_token_id", "dropout", "attention_dropout", "init_std",
)


@dataclass(frozen=True)
class OPTConfig:
    """The fields of Hugging Face's ``OPTConfig`` that shape the network, with its defaults
    (those of facebook/opt-125m except ``vocab_size``'s users may change).

    ``word_embed_proj_dim=None`` means ``hidden_size`` (as in Hugging Face). Values are
    checked on construction; errors name the field and the accepted range.

    Examples:
        >>> config = OPTConfig.preset("opt-125m")
        >>> config.hidden_size, config.num_hidden_layers, config.head_dim
        (768, 12, 64)
        >>> OPTConfig.from_hf_dict(config.to_hf_dict()) == config
        True
        >>> OPTConfig(hidden_size=100, num_attention_heads=12)
        Traceback (most recent call last):
        ...
        jaxcollapse._validation.ConfigError: hidden_size (100) must be divisible by num_attention_heads (12)
    """

    vocab_size: int = 50272
    hidden_size: int = 768
    num_hidden_layers: int = 12
    ffn_dim: int = 3072
    num_attention_heads: int = 12
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int | None = None
    do_layer_norm_before: bool = True
    remove_final_layer_norm: bool = False
    layer_norm_elementwise_affine: bool = True
    activation_function: str = "relu"
    enable_bias: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | None = 2
    dropout: float = 0.1
    attention_dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads",
                     "max_position_embeddings"):
            object.__setattr__(self, name, require_int(name, getattr(self, name), 1))
        if self.word_embed_proj_dim is None:
            object.__setattr__(self, "word_embed_proj_dim", self.hidden_size)
        object.__setattr__(self, "word_embed_proj_dim", require_int("word_embed_proj_dim", self.word_embed_proj_dim, 1))
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                              f"({self.num_attention_heads})")
        for name in ("do_layer_norm_before", "remove_final_layer_norm", "layer_norm_elementwise_affine", "enable_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False; got {getattr(self, name)!r}")
        require_choice("activation_function", self.activation_function, tuple(ACTIVATIONS))
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None:
                value = require_int(name, value, 0)
                if value >= self.vocab_size:
                    raise ConfigError(f"{name} must be None or an integer in [0, vocab_size={self.vocab_size}); "
                                      f"got {value}")
                object.__setattr__(self, name, value)
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be a probability in [0, 1); got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "init_std", require_positive("init_std", self.init_std))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_final_layer_norm(self) -> bool:
        """Hugging Face's rule: ``do_layer_norm_before and not _remove_final_layer_norm``."""
        return self.do_layer_norm_before and not self.remove_final_layer_norm

    @property
    def has_projection(self) -> bool:
        """``project_in`` / ``project_out`` exist when ``word_embed_proj_dim != hidden_size``."""
        return self.word_embed_proj_dim != self.hidden_size

    @classmethod
    def preset(cls, name: str, **overrides) -> OPTConfig:
        """A named configuration (:data:`PRESETS`), with fields overridden by keyword.

        ``"tiny"`` (tests, doctests), ``"small"`` (a 4-layer model for experiments on a CPU or
        one GPU) and ``"opt-125m"`` (facebook/opt-125m, exactly). ``vocab_size`` is usually
        overridden to match a tokenizer.

        >>> OPTConfig.preset("tiny", vocab_size=128).vocab_size
        128
        """
        require_choice("preset", name, tuple(PRESETS))
        return dataclasses.replace(PRESETS[name], **overrides)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> OPTConfig:
        """From a Hugging Face ``config.json`` dictionary (``model_type`` must be ``"opt"``);
        keys that do not shape the network (``use_cache``, ``torch_dtype``, ...) are ignored."""
        model_type = d.get("model_type")
        if model_type != "opt":
            raise ConfigError(f"not an OPT configuration: model_type is {model_type!r}, expected 'opt' "
                              f"(architectures: {d.get('architectures')!r})")
        if d.get("tie_word_embeddings", True) is not True:
            raise ConfigError("tie_word_embeddings must be true: OPTForCausalLM here ties the output head to "
                              "the token embedding, as every published OPT checkpoint does")
        kwargs = {name: d[name] for name in _HF_FIELDS if name in d}
        if "_remove_final_layer_norm" in d:
            kwargs["remove_final_layer_norm"] = d["_remove_final_layer_norm"]
        eos = kwargs.get("eos_token_id")
        if isinstance(eos, (list, tuple)):
            if len(eos) != 1:
                raise ConfigError(f"eos_token_id must be a single token id; got {eos!r}")
            kwargs["eos_token_id"] = eos[0]
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """A ``config.json`` dictionary that ``transformers.OPTConfig`` reads back."""
        d: dict[str, Any] = {"architectures": ["OPTForCausalLM"], "model_type": "opt"}
        d.update({name: getattr(self, name) for name in _HF_FIELDS})
        d.update({
            "_remove_final_layer_norm": self.remove_final_layer_norm,
            "layerdrop": 0.0,
            "tie_word_embeddings": True,
            "use_cache": True,
            "dtype": "float32",
        })
        return d


PRESETS: dict[str, OPTConfig] = {
    "tiny": OPTConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=256, num_attention_heads=4,
                      max_position_embeddings=256),
    "small": OPTConfig(hidden_size=256, num_hidden_layers=4, ffn_dim=1024, num_attention_heads=4,
                       max_position_embeddings=512),
    "opt-125m": OPTConfig(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                          num_attention_heads=12, max_position_embeddings=2048, word_embed_proj_dim=768,
                          do_layer_norm_before=True, pad_token_id=1, bos_token_id=2, eos_token_id=2,
                          dropout=0.1, attention_dropout=0.0, activation_function="relu"),
}


class KVCache(NamedTuple):
    """Keys and values of every layer, for ``max_length`` slots per sequence.

    ``keys`` / ``values``: (layers, batch, heads, max_length, head_dim), each head's slots
    contiguous as the attention products read them; ``index``: int32
    scalar, the number of slots already written (the next call writes ``[index, index + T)``).
    """

    keys: jax.Array
    values: jax.Array
    index: jax.Array


def init_cache(config: OPTConfig, batch_size: int, max_length: int, dtype=jnp.float32) -> KVCache:
    """An empty cache of ``max_length`` slots (``max_length <= max_position_embeddings``).

    >>> cache = init_cache(OPTConfig.preset("tiny"), batch_size=2, max_length=16)
    >>> cache.keys.shape, int(cache.index)
    ((2, 2, 4, 16, 16), 0)
    """
    batch_size = require_int("batch_size", batch_size, 1)
    max_length = require_int("max_length", max_length, 1)
    if max_length > config.max_position_embeddings:
        raise ConfigError(f"max_length must be <= max_position_embeddings ({config.max_position_embeddings}); "
                          f"got {max_length}")
    shape = (config.num_hidden_layers, batch_size, config.num_attention_heads, max_length, config.head_dim)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def positions_from_mask(attention_mask) -> jax.Array:
    """Hugging Face's default OPT positions, ``cumsum(mask) * mask - 1`` along the sequence:
    real tokens count 0, 1, 2, ... from the first one, padded slots get -1 (so, after the
    offset of 2, they read row 1 of the position table).

    >>> positions_from_mask(jnp.array([[0, 0, 1, 1], [1, 1, 1, 1]])).tolist()
    [[-1, -1, 0, 1], [0, 1, 2, 3]]
    """
    mask = jnp.asarray(attention_mask).astype(jnp.int32)
    return jnp.cumsum(mask, axis=-1) * mask - 1


def no_boundary(x):
    """The default ``boundary`` of :class:`OPTForCausalLM`: the value itself, gradient and all.

    >>> no_boundary(jnp.arange(2.0))
    Array([0., 1.], dtype=float32)
    """
    return x


def _dropout(x, rate: float, key):
    """Inverted dropout (PyTorch's): keep with probability 1 - rate, scale by 1 / (1 - rate).
    The mask is Threefry of each element's index, fused into its consumers
    (:func:`jaxcollapse._random.fused_bernoulli`)."""
    if key is None or rate == 0.0:
        return x
    keep = fused_bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _linear(config: OPTConfig, fan_in: int, fan_out: int, rngs, dtype, param_dtype, bias: bool):
    return nnx.Linear(fan_in, fan_out, use_bias=bias, kernel_init=nnx.initializers.normal(config.init_std),
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _layer_norm(config: OPTConfig, rngs, dtype, param_dtype):
    affine = config.layer_norm_elementwise_affine
    return nnx.LayerNorm(config.hidden_size, epsilon=LAYER_NORM_EPS, use_bias=affine, use_scale=affine,
                         use_fast_variance=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class OPTAttention(nnx.Module):
    """Multi-head self-attention over a (possibly cached) sequence of key slots."""

    def __init__(self, config: OPTConfig, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.attention_dropout = config.attention_dropout
        width = config.hidden_size
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self, name, _linear(config, width, width, rngs, dtype, param_dtype, config.enable_bias))

    def __call__(self, x, allowed, layer_cache, index, dropout_key):
        """``allowed`` (B, T, S) says which key slots each query sees; ``layer_cache`` is None
        or ``(keys, values, layer)``: the whole cache's arrays (layers, B, heads, S,
        head_dim), into whose row ``layer`` the new keys and values are written in place
        (writing a layer's slice and stacking the layers again copied the whole cache at
        every decoding step). Returns the output and None or the updated ``(keys,
        values)``."""
        batch, length, _ = x.shape
        split = lambda y: y.reshape(batch, length, self.num_heads, self.head_dim)
        query = split(self.q_proj(x) * self.head_dim**-0.5)  # HF scales after the projection
        key, value = split(self.k_proj(x)), split(self.v_proj(x))  # (B, T, heads, head_dim)
        slots = "bshd"  # without a cache XLA picks the layouts of the products (5 % faster training)
        if layer_cache is not None:
            all_keys, all_values, layer = layer_cache
            start = (layer, 0, 0, index, 0)
            new = lambda y, buffer: y.transpose(0, 2, 1, 3)[None].astype(buffer.dtype)
            all_keys = jax.lax.dynamic_update_slice(all_keys, new(key, all_keys), start)
            all_values = jax.lax.dynamic_update_slice(all_values, new(value, all_values), start)
            key, value, layer_cache, slots = all_keys[layer], all_values[layer], (all_keys, all_values), "bhsd"
        scores = jnp.einsum(f"bthd,{slots}->bhts", query, key.astype(query.dtype)).astype(jnp.float32)
        # a large finite negative number, not -inf: fully masked rows (padded queries) stay finite
        scores = jnp.where(allowed[:, None], scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(query.dtype)
        weights = _dropout(weights, self.attention_dropout, dropout_key)
        out = jnp.einsum(f"bhts,{slots}->bthd", weights, value.astype(query.dtype))
        return self.out_proj(out.reshape(batch, length, -1)), layer_cache


class OPTDecoderLayer(nnx.Module):
    """Attention then feed-forward, each with a residual connection; layer norms before
    (``do_layer_norm_before``) or after each block."""

    def __init__(self, config: OPTConfig, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        self.pre_norm = config.do_layer_norm_before
        self.dropout = config.dropout
        self.activation_function = config.activation_function
        self.self_attn = OPTAttention(config, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.self_attn_layer_norm = _layer_norm(config, rngs, dtype, param_dtype)
        self.fc1 = _linear(config, config.hidden_size, config.ffn_dim, rngs, dtype, param_dtype, config.enable_bias)
        self.fc2 = _linear(config, config.ffn_dim, config.hidden_size, rngs, dtype, param_dtype, config.enable_bias)
        self.final_layer_norm = _layer_norm(config, rngs, dtype, param_dtype)

    def __call__(self, x, allowed, layer_cache, index, key, boundary: Callable):
        # ``boundary`` after each layer norm and each block's output: the gradient there
        # feeds two products (weights and input) and elementwise work (the dropout mask,
        # the norm's backward), which XLA:CPU otherwise recomputes in every consumer (a
        # gradient boundary there: training 10-12 % faster for tiny, 6 % for OPT-125m, measured)
        keys = (None, None, None) if key is None else tuple(jax.random.split(key, 3))
        residual = x
        if self.pre_norm:
            x = boundary(self.self_attn_layer_norm(x))
        x, layer_cache = self.self_attn(x, allowed, layer_cache, index, keys[0])
        x = residual + _dropout(boundary(x), self.dropout, keys[1])
        if not self.pre_norm:
            x = boundary(self.self_attn_layer_norm(x))
        residual = x
        if self.pre_norm:
            x = boundary(self.final_layer_norm(x))
        x = boundary(self.fc2(ACTIVATIONS[self.activation_function](self.fc1(x))))
        x = residual + _dropout(x, self.dropout, keys[2])
        if not self.pre_norm:
            x = boundary(self.final_layer_norm(x))
        return x, layer_cache


class OPTForCausalLM(nnx.Module):
    """OPT with its language-model head (tied to the token embedding).

    Call: ``logits, cache = model(input_ids, attention_mask=None, position_ids=None,
    cache=None, deterministic=True, dropout_key=None, head_positions=None,
    boundary=no_boundary)``.

    * Without a cache: ``input_ids`` (B, T) and ``attention_mask`` (B, T) of 0/1 (None: all
      ones); ``position_ids`` default to :func:`positions_from_mask`. Returns logits
      (B, T, vocab) and ``None``.
    * With a cache (:func:`init_cache`, ``max_length`` slots): ``attention_mask`` is
      (B, max_length) over the cache slots (1 for slots holding real tokens already written
      or written by this call, 0 for padding and unwritten slots). The new keys and values
      go to slots ``[index, index + T)``; the query in slot s sees the slots <= s whose mask
      is 1. ``position_ids`` (B, T) should be passed by the caller; when None they are
      :func:`positions_from_mask` of the slot mask, read at slots ``[index, index + T)``
      (Hugging Face's rule). Returns logits and the cache with ``index + T``. Writing past
      ``max_length`` is not checked (``dynamic_update_slice`` would clamp): size the cache.
    * ``deterministic=False`` applies dropout, drawn from ``dropout_key`` (required when a
      dropout rate is positive).
    * ``head_positions`` (a ``slice`` of the T positions, None: all) runs the final layer
      norm, the projection and the output head only there: ``slice(None, -1)`` for a
      next-token loss, ``slice(-1, None)`` for a prompt whose last logits alone are read.
      XLA does not prune the unused rows of the (T, vocab) head by itself; at opt-125m
      the head is a large part of a training step.
    * ``boundary`` (a function of an array, returning an equal array) is applied to every
      value whose gradient fans out: each layer's input, each layer norm's output, the
      attention and feed-forward blocks' outputs. The identity by default; a trainer passes
      a function that changes how the gradient is computed, not what it is (on a CPU,
      :mod:`jaxcollapse.lm.finetune` passes a gradient boundary that XLA:CPU keeps).

    ``dtype`` is the computation dtype (None: that of the parameters), ``param_dtype`` that of
    the parameters; attention softmax always runs in float32. Initialisation follows Hugging
    Face: normal(0, init_std) weights, zero biases, the padding token's embedding row zero.

    Example (prefill, then one token at a time, equals the full pass):
        >>> import jax.numpy as jnp, numpy as np
        >>> config = OPTConfig.preset("tiny", vocab_size=64)
        >>> model = OPTForCausalLM(config, rngs=nnx.Rngs(0))
        >>> ids = jnp.array([[1, 2, 9, 10, 11], [2, 3, 4, 5, 6]])
        >>> mask = jnp.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
        >>> full, _ = model(ids, mask)
        >>> cache = init_cache(config, batch_size=2, max_length=8)
        >>> slots = jnp.zeros((2, 8), jnp.int32).at[:, :5].set(mask)
        >>> positions = positions_from_mask(mask)
        >>> first, cache = model(ids[:, :3], slots, positions[:, :3], cache)
        >>> step, cache = model(ids[:, 3:4], slots, positions[:, 3:4], cache)
        >>> bool(np.allclose(step[:, 0], full[:, 3], atol=1e-5)), int(cache.index)
        (True, 4)
    """

    def __init__(self, config: OPTConfig, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        self.config = config
        init = nnx.initializers.normal(config.init_std)
        self.embed_tokens = nnx.Embed(config.vocab_size, config.word_embed_proj_dim, embedding_init=init,
                                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if config.pad_token_id is not None:  # nn.Embedding(padding_idx=...) starts with a zero row
            self.embed_tokens.embedding[...] = self.embed_tokens.embedding[...].at[config.pad_token_id].set(0)
        self.embed_positions = nnx.Embed(config.max_position_embeddings + POSITION_OFFSET, config.hidden_size,
                                         embedding_init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if config.has_projection:
            self.project_in = _linear(config, config.word_embed_proj_dim, config.hidden_size, rngs, dtype,
                                      param_dtype, bias=False)
            self.project_out = _linear(config, config.hidden_size, config.word_embed_proj_dim, rngs, dtype,
                                       param_dtype, bias=False)
        else:
            self.project_in = self.project_out = None
        self.layers = nnx.List([OPTDecoderLayer(config, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                                for _ in range(config.num_hidden_layers)])
        self.final_layer_norm = _layer_norm(config, rngs, dtype, param_dtype) if config.has_final_layer_norm else None

    def __call__(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None,
                 deterministic: bool = True, dropout_key=None, head_positions: slice | None = None,
                 boundary: Callable = no_boundary):
        config = self.config
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, length); got shape {input_ids.shape}")
        batch, length = input_ids.shape
        if cache is None:
            slots, index = length, 0
            if length > config.max_position_embeddings:
                raise ValueError(f"input length {length} exceeds max_position_embeddings "
                                 f"({config.max_position_embeddings})")
        else:
            slots, index = cache.keys.shape[3], cache.index
            expected = (config.num_hidden_layers, batch, config.num_attention_heads, slots, config.head_dim)
            if cache.keys.shape != expected or cache.values.shape != expected:
                raise ValueError(f"cache keys and values must be (layers, batch, heads, max_length, head_dim) = "
                                 f"{expected} for this model and a batch of {batch}; got {cache.keys.shape} "
                                 f"and {cache.values.shape} (init_cache makes one)")
            if length > slots:
                raise ValueError(f"input length {length} exceeds the cache's max_length {slots}")
        if attention_mask is None:
            attention_mask = jnp.ones((batch, slots), jnp.int32)
        attention_mask = jnp.asarray(attention_mask)
        if attention_mask.shape != (batch, slots):
            what = "(batch, max_length) over the cache slots" if cache is not None else "(batch, length)"
            raise ValueError(f"attention_mask must be {what} = {(batch, slots)}; got {attention_mask.shape}")
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)
            if cache is not None:
                position_ids = jax.lax.dynamic_slice_in_dim(position_ids, index, length, axis=1)
        position_ids = jnp.asarray(position_ids)
        if position_ids.shape != (batch, length):
            raise ValueError(f"position_ids must be (batch, length) = {(batch, length)}; got {position_ids.shape}")
        if not deterministic and dropout_key is None and (config.dropout > 0 or config.attention_dropout > 0):
            raise ValueError("deterministic=False needs a dropout_key (a jax.random key)")
        use_dropout = not deterministic and dropout_key is not None

        query_slots = index + jnp.arange(length)
        causal = jnp.arange(slots)[None, :] <= query_slots[:, None]  # (T, S)
        allowed = causal[None] & (attention_mask[:, None, :] > 0)  # (B, T, S)

        x = self.embed_tokens(input_ids)
        if self.project_in is not None:
            x = self.project_in(x)
        x = x + self.embed_positions(position_ids.astype(jnp.int32) + POSITION_OFFSET)

        buffers = None if cache is None else (cache.keys, cache.values)
        for i, layer in enumerate(self.layers):
            key = jax.random.fold_in(dropout_key, i) if use_dropout else None
            # every layer adds to the residual stream's gradient; without a gradient
            # boundary XLA:CPU recomputes the sum over the layers above inside each layer
            # (OPT-125m training: 2.8 s a step without, 2.0-2.1 s with; tiny: 31 against 26 ms)
            x, buffers = layer(boundary(x), allowed, None if cache is None else (*buffers, i), index, key, boundary)
        if head_positions is not None:
            x = x[:, head_positions]
        if self.final_layer_norm is not None:
            x = self.final_layer_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        logits = self.embed_tokens.attend(x)
        if cache is not None:
            cache = KVCache(*buffers, (cache.index + length).astype(jnp.int32))
        return logits, cache


def functional(model: OPTForCausalLM):
    """The model as a pure function of its parameters: ``apply, params = functional(model)``.

    ``apply(params, input_ids, attention_mask=None, position_ids=None, cache=None,
    deterministic=True, dropout_key=None, head_positions=None, boundary=no_boundary) ->
    (logits, cache)``, the model's call (:class:`OPTForCausalLM`), merges the static graph
    with ``params`` inside, so it can be ``jax.jit``-ed with the parameters as an argument
    (and differentiated with respect to them). ``params`` is a plain nested dict of arrays
    (``nnx.to_pure_dict``): a jitted call flattens its arguments in Python, and an
    ``nnx.State`` of Variables took ~10 times longer (5-7 % of a tiny training step,
    measured). ``deterministic`` and ``boundary`` are structural: mark them static
    (``jax.jit(apply, static_argnames="deterministic")``) or close over them.

    >>> config = OPTConfig.preset("tiny", vocab_size=64)
    >>> apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    >>> logits, _ = jax.jit(apply)(params, jnp.ones((1, 3), jnp.int32))
    >>> logits.shape
    (1, 3, 64)
    """
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)

    def apply(params, input_ids, attention_mask=None, position_ids=None, cache=None, deterministic=True,
              dropout_key=None, head_positions=None, boundary=no_boundary):
        return nnx.merge(graphdef, params)(input_ids, attention_mask, position_ids, cache, deterministic=deterministic,
                                           dropout_key=dropout_key, head_positions=head_positions, boundary=boundary)

    return apply, params


def decoder_fns(apply, config: OPTConfig):
    """The :class:`~jaxcollapse.lm.generate.DecoderFns` of a functional OPT: its cache, its
    context length, and a prompt call whose output head runs at the last position only
    (``transformers.generate`` does the same through ``logits_to_keep=1``). Build it once
    per model: it is a static argument of the compiled generator.

    >>> from jaxcollapse.lm.generate import GenerationConfig, generate
    >>> config = OPTConfig.preset("tiny", vocab_size=64)
    >>> apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    >>> out = generate(decoder_fns(apply, config), params, jnp.ones((2, 4), jnp.int32), jnp.ones((2, 4), jnp.int32),
    ...                config=GenerationConfig(max_new_tokens=3, method="greedy"))
    >>> out.tokens.shape
    (2, 3)
    """
    from .generate import DecoderFns

    def prefill(params, input_ids, attention_mask, position_ids, cache):
        return apply(params, input_ids, attention_mask, position_ids, cache, head_positions=slice(-1, None))

    return DecoderFns(apply, lambda batch, length: init_cache(config, batch, length),
                      context_length=config.max_position_embeddings, prefill=prefill)
