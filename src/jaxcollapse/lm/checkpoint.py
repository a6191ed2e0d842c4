"""Hugging Face OPT checkpoints (``config.json`` + safetensors) to and from
:class:`~jaxcollapse.lm.opt.OPTForCausalLM`, without PyTorch and without pickle.

Tensor names are those of transformers' ``OPTForCausalLM`` (``model.decoder.*``); files that
name them ``decoder.*`` (the original facebook/opt-* uploads) load too. PyTorch ``Linear``
weights are (out, in) and are transposed to Flax's (in, out) kernels. ``lm_head.weight``
is tied to ``model.decoder.embed_tokens.weight`` and is neither needed nor written.

Examples:
    >>> import tempfile
    >>> from flax import nnx
    >>> from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM
    >>> config = OPTConfig.preset("tiny", vocab_size=64)
    >>> folder = tempfile.mkdtemp()
    >>> save_opt(folder, config, OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    >>> loaded_config, model = load_opt(folder)
    >>> loaded_config == config
    True
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from .._integrity import read_safetensors
from .._validation import ConfigError, require_memory
from .opt import OPTConfig, OPTForCausalLM

__all__ = ["load_opt", "save_opt", "read_config", "CheckpointError", "MissingCheckpointFile", "hf_tensor_names",
           "parameter_estimate"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DOWNLOAD_HINT = (
    "download the checkpoint's config.json and model.safetensors (for example facebook/opt-125m's: "
    "`huggingface-cli download facebook/opt-125m config.json model.safetensors --local-dir {dir}`) "
    "into {dir}"
)


class CheckpointError(ConfigError):
    """A checkpoint's files do not describe an OPT model this package can load."""


class MissingCheckpointFile(CheckpointError, FileNotFoundError):
    """A checkpoint file or folder is missing (a ConfigError, and a FileNotFoundError as before)."""


def _hf_linear(prefix: str, path: tuple, bias: bool):
    names = [(path + ("kernel",), f"{prefix}.weight", True)]
    if bias:
        names.append((path + ("bias",), f"{prefix}.bias", False))
    return names


def _hf_layer_norm(prefix: str, path: tuple, config: OPTConfig):
    if not config.layer_norm_elementwise_affine:
        return []
    return [(path + ("scale",), f"{prefix}.weight", False), (path + ("bias",), f"{prefix}.bias", False)]


def hf_tensor_names(config: OPTConfig) -> list[tuple[tuple, str, bool]]:
    """``(nnx path, Hugging Face name, transpose)`` for every parameter of the model.

    >>> from jaxcollapse.lm.opt import OPTConfig
    >>> hf_tensor_names(OPTConfig.preset("tiny"))[2]
    (('layers', 0, 'self_attn', 'q_proj', 'kernel'), 'model.decoder.layers.0.self_attn.q_proj.weight', True)
    """
    d = "model.decoder"
    names = [(("embed_tokens", "embedding"), f"{d}.embed_tokens.weight", False),
             (("embed_positions", "embedding"), f"{d}.embed_positions.weight", False)]
    for i in range(config.num_hidden_layers):
        prefix, path = f"{d}.layers.{i}", ("layers", i)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            names += _hf_linear(f"{prefix}.self_attn.{proj}", path + ("self_attn", proj), config.enable_bias)
        names += _hf_layer_norm(f"{prefix}.self_attn_layer_norm", path + ("self_attn_layer_norm",), config)
        names += _hf_linear(f"{prefix}.fc1", path + ("fc1",), config.enable_bias)
        names += _hf_linear(f"{prefix}.fc2", path + ("fc2",), config.enable_bias)
        names += _hf_layer_norm(f"{prefix}.final_layer_norm", path + ("final_layer_norm",), config)
    if config.has_final_layer_norm:
        names += _hf_layer_norm(f"{d}.final_layer_norm", ("final_layer_norm",), config)
    if config.has_projection:
        names += _hf_linear(f"{d}.project_in", ("project_in",), False)
        names += _hf_linear(f"{d}.project_out", ("project_out",), False)
    return names


def _require_directory(directory) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingCheckpointFile(f"no checkpoint directory {str(directory)!r}: "
                                + _DOWNLOAD_HINT.format(dir=directory))
    return directory


def read_config(directory) -> OPTConfig:
    """The :class:`OPTConfig` of a checkpoint directory's ``config.json``."""
    directory = _require_directory(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise MissingCheckpointFile(f"{str(path)!r} is missing: " + _DOWNLOAD_HINT.format(dir=directory))
    with open(path, encoding="utf-8") as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(d, dict) or d.get("model_type") != "opt":
        found = d.get("model_type") if isinstance(d, dict) else None
        raise CheckpointError(f"{str(path)!r} is not an OPT checkpoint: model_type is {found!r}, expected 'opt' "
                              f"(an OPTForCausalLM checkpoint such as facebook/opt-125m)")
    return OPTConfig.from_hf_dict(d)


def _weight_files(directory: Path) -> list[Path]:
    single, index = directory / WEIGHTS_FILE, directory / INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map", {})
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
            raise CheckpointError(f"{str(index)!r} is not a safetensors index ({type(error).__name__}: {error})") from None
        names = set(weight_map.values()) if isinstance(weight_map, dict) else {None}
        # a shard is a file of this folder: an index must not send the loader elsewhere
        outside = sorted(repr(name) for name in names if not isinstance(name, str) or Path(name).name != name
                         or name in ("", ".", ".."))
        if outside:
            raise CheckpointError(f"{str(index)!r} names shards outside {str(directory)!r}: {', '.join(outside)}; "
                                  f"a shard must be a file name in the checkpoint folder")
        files = [directory / name for name in sorted(names)]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise MissingCheckpointFile(f"{str(index)!r} lists shards that are missing from {str(directory)!r}: "
                                    f"{', '.join(missing)}; download them into that directory")
        return files
    hint = ""
    if (directory / "pytorch_model.bin").exists():
        hint = " (pytorch_model.bin is a pickle and is not read: use the checkpoint's safetensors file)"
    raise MissingCheckpointFile(f"no {WEIGHTS_FILE} (or {INDEX_FILE} with its shards) in {str(directory)!r}{hint}: "
                            + _DOWNLOAD_HINT.format(dir=directory))


def _read_tensors(files: list[Path]) -> dict[str, np.ndarray]:
    tensors = {}
    for path in files:
        tensors.update(read_safetensors(path, "checkpoint weights")[0])
    return tensors


def parameter_estimate(config: OPTConfig) -> int:
    """OPT's parameter count from its config alone (embeddings, projections, every layer's
    attention, feed-forward and norms), to refuse a model that cannot fit before it is built."""
    hidden, ffn, layers = config.hidden_size, config.ffn_dim, config.num_hidden_layers
    embed = config.vocab_size * config.word_embed_proj_dim + (config.max_position_embeddings + 2) * hidden
    projections = 2 * hidden * config.word_embed_proj_dim if config.word_embed_proj_dim != hidden else 0
    per_layer = 4 * hidden * hidden + 2 * hidden * ffn + 9 * hidden + ffn
    return int(embed + projections + layers * per_layer + 2 * hidden)


def load_opt(directory, *, dtype=None, param_dtype=jnp.float32) -> tuple[OPTConfig, OPTForCausalLM]:
    """Read ``config.json`` and ``model.safetensors`` (or a sharded
    ``model.safetensors.index.json``) from a local directory.

    Parameters are cast to ``param_dtype`` (float32 by default, whatever the file holds).
    Raises ``FileNotFoundError`` (saying what to download where) for missing files and
    :class:`CheckpointError` for a non-OPT ``config.json`` or a missing or misshapen tensor.
    """
    directory = _require_directory(directory)
    config = read_config(directory)
    # the file's tensors, the model's parameters and fine-tuning's gradients and two moments
    require_memory(f"the OPT model of {str(directory)!r} ({parameter_estimate(config):,} parameters by its config.json)",
                   4 * 5 * parameter_estimate(config), "use a smaller checkpoint")
    tensors = _read_tensors(_weight_files(directory))
    if not any(name.startswith("model.decoder.") for name in tensors):  # the original uploads: decoder.*
        tensors = {("model." + name if name.startswith("decoder.") else name): value for name, value in tensors.items()}

    abstract = nnx.eval_shape(lambda: OPTForCausalLM(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
    graphdef, state = nnx.split(abstract)
    expected = {path: (name, transpose) for path, name, transpose in hf_tensor_names(config)}
    flat = []
    for path, variable in nnx.to_flat_state(state):
        if path not in expected:
            raise CheckpointError(f"internal error: no Hugging Face name for parameter {path}")
        name, transpose = expected[path]
        if name not in tensors:
            raise CheckpointError(f"tensor {name!r} is missing from the checkpoint in {str(directory)!r}")
        value = tensors[name]
        if transpose and value.ndim == 2:
            value = value.T
        if value.shape != variable.shape:
            raise CheckpointError(f"tensor {name!r} has shape {tensors[name].shape}; config.json implies "
                                  f"{variable.shape[::-1] if transpose else variable.shape}")
        flat.append((path, variable.replace(jnp.asarray(value, dtype=param_dtype))))
    used = {name for name, _ in expected.values()} | {"lm_head.weight"}
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        warnings.warn(f"{len(unexpected)} tensors of {str(directory)!r} are not used: {', '.join(unexpected[:5])}"
                      + (" ..." if len(unexpected) > 5 else ""), stacklevel=2)
    if "lm_head.weight" in tensors and tensors["lm_head.weight"].shape != tensors[expected[("embed_tokens", "embedding")][0]].shape:
        raise CheckpointError(f"tensor 'lm_head.weight' has shape {tensors['lm_head.weight'].shape}; it is tied to "
                              f"the token embedding of shape {(config.vocab_size, config.word_embed_proj_dim)}")
    return config, nnx.merge(graphdef, nnx.from_flat_state(flat))


def save_opt(directory, config: OPTConfig, model: OPTForCausalLM) -> None:
    """Write ``config.json`` and ``model.safetensors`` (float32, Hugging Face names and
    layouts) into ``directory`` (created if needed); ``transformers.OPTForCausalLM
    .from_pretrained(directory)`` and :func:`load_opt` read them."""
    if model.config != config:
        raise CheckpointError("model.config differs from the config given to save_opt")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = {path: (name, transpose) for path, name, transpose in hf_tensor_names(config)}
    tensors = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name, transpose = names[path]
        value = np.asarray(jax.device_get(variable[...]), dtype=np.float32)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    save_file(tensors, os.fspath(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    with open(directory / CONFIG_FILE, "w", encoding="utf-8") as f:
        json.dump(config.to_hf_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
