"""The OPT decoder against PyTorch reference outputs (tests/fixtures/opt, made by
scripts/make_opt_fixtures.py), its key/value cache against the full pass, and checkpoint IO.
Runs without PyTorch."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxcollapse import ConfigError
from jaxcollapse._xla_cpu.fusion import gradient_boundary
from jaxcollapse.lm.checkpoint import CheckpointError, load_opt, read_config, save_opt
from jaxcollapse.lm.opt import (
    KVCache,
    OPTConfig,
    OPTForCausalLM,
    functional,
    init_cache,
    positions_from_mask,
)

FIXTURES = Path(__file__).parent / "fixtures" / "opt"
NAMES = ("pre_ln", "post_ln_proj", "proj_gelu_nobias")


def reference(name):
    with np.load(FIXTURES / name / "logits.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def loaded():
    return {name: load_opt(FIXTURES / name) for name in NAMES}


def _square_model(layers: int = 2):
    """A randomly initialised model whose matrices all have one shape (initialising compiles
    a random draw per parameter shape, seconds each on a small CPU)."""
    config = OPTConfig(vocab_size=16, hidden_size=16, ffn_dim=16, max_position_embeddings=14, num_attention_heads=2,
                       num_hidden_layers=layers)
    return config, OPTForCausalLM(config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def fresh():
    return _square_model()


_JITTED = {}


def forward(model, *args, **kwargs):
    """``model(*args, **kwargs)`` through ``functional`` and ``jax.jit`` (op-by-op dispatch
    compiles every primitive per shape and is several times slower here)."""
    if id(model) not in _JITTED:
        apply, params = functional(model)
        _JITTED[id(model)] = (model, jax.jit(apply, static_argnames="deterministic"), params)
    _, apply, params = _JITTED[id(model)]
    return apply(params, *args, **kwargs)


def masked_max_abs(a, b, mask):
    return float(np.abs(np.asarray(a) - np.asarray(b))[np.asarray(mask, bool)].max())


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_pytorch(loaded, name):
    config, model = loaded[name]
    ref = reference(name)
    assert ref["attention_mask"].min() == 0  # the batch is left-padded
    logits, cache = forward(model, ref["input_ids"], ref["attention_mask"])
    assert cache is None
    assert logits.shape == ref["logits"].shape == (3, 10, config.vocab_size)
    assert logits.dtype == jnp.float32
    assert masked_max_abs(logits, ref["logits"], ref["attention_mask"]) < 1e-4


def test_functional_params_are_plain_arrays_and_apply_is_the_module(loaded):
    """functional's parameters are a nested dict of arrays (no nnx Variables: a jitted
    call flattens them in Python at every step), and apply with them is the module."""
    _, model = loaded["pre_ln"]
    apply, params = functional(model)
    assert isinstance(params, dict)
    assert jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable)) == jax.tree.leaves(params)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
    ids = jnp.asarray(reference("pre_ln")["input_ids"])
    np.testing.assert_array_equal(np.asarray(jax.jit(apply)(params, ids)[0]), np.asarray(jax.jit(lambda i: model(i)[0])(ids)))


@pytest.mark.parametrize("name", ["pre_ln", "post_ln_proj"])
def test_head_positions_are_rows_of_the_full_logits(loaded, name):
    """The head run at some positions gives those rows of the full pass (final layer norm
    and projection included), and the library's loss equals the full log-softmax one."""
    from jaxcollapse.lm.finetune import block_nll

    _, model = loaded[name]
    apply, params = functional(model)
    ids = jnp.asarray(reference(name)["input_ids"])
    full, _ = jax.jit(apply)(params, ids)
    for where in (slice(None, -1), slice(-1, None)):
        part, _ = jax.jit(lambda p, i, where=where: apply(p, i, head_positions=where))(params, ids)
        np.testing.assert_allclose(np.asarray(part), np.asarray(full)[:, where], atol=1e-5)
    by_softmax = -np.take_along_axis(np.asarray(jax.nn.log_softmax(full[:, :-1])), np.asarray(ids)[:, 1:, None],
                                     axis=-1)[..., 0].sum(axis=1)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda p: block_nll(apply, p, ids))(params)), by_softmax,
                               rtol=1e-5)


def test_fixture_configs_read_as_expected(loaded):
    pre, post, other = (loaded[name][0] for name in NAMES)
    assert pre.do_layer_norm_before and pre.has_final_layer_norm and not pre.has_projection
    assert not post.do_layer_norm_before and not post.has_final_layer_norm and post.word_embed_proj_dim == 16
    assert other.activation_function == "gelu" and not other.enable_bias and not other.layer_norm_elementwise_affine
    assert loaded["pre_ln"][1].project_in is None and loaded["pre_ln"][1].final_layer_norm is not None
    assert loaded["post_ln_proj"][1].final_layer_norm is None


def _cached_logits(apply, params, config, ids, mask, chunks, max_length):
    """Feed ids in the given chunk lengths through the cache; concatenated logits."""
    batch, width = ids.shape
    cache = init_cache(config, batch, max_length)
    slots = np.zeros((batch, max_length), np.int32)
    slots[:, :width] = mask  # 1 for real tokens written now or before; unwritten slots 0
    positions = np.asarray(positions_from_mask(mask))
    out, start = [], 0
    for length in chunks:
        stop = start + length
        logits, cache = apply(params, ids[:, start:stop], slots, positions[:, start:stop], cache)
        assert int(cache.index) == stop
        out.append(logits)
        start = stop
    assert start == width
    return np.concatenate(out, axis=1), cache


@pytest.mark.parametrize("name, chunks", [("pre_ln", [4, 1, 1, 1, 3]), ("post_ln_proj", [5, 5])])
def test_cache_matches_full_pass_with_left_padding(loaded, name, chunks):
    config, model = loaded[name]
    ref = reference(name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    apply, params = functional(model)
    traces = []

    def counted(*args):
        traces.append(args[1].shape)
        return apply(*args)

    step = jax.jit(counted)
    full, _ = forward(model, ids, mask)
    # a prefill, then one token at a time and a chunk (pre_ln), or two halves (post_ln_proj)
    logits, cache = _cached_logits(step, params, config, ids, mask, chunks, max_length=16)
    assert masked_max_abs(logits, full, mask) < 1e-5
    assert masked_max_abs(logits, ref["logits"], mask) < 1e-4
    assert len(traces) == len(set(chunks))  # one compilation per chunk length
    assert cache.keys.shape == (config.num_hidden_layers, 3, config.num_attention_heads, 16, config.head_dim)
    assert cache.index.dtype == jnp.int32
    # the slots past the written ones are untouched, the written ones are not
    for buffer in (cache.keys, cache.values):
        assert not np.any(np.asarray(buffer)[:, :, :, 10:]) and np.all(np.any(np.asarray(buffer)[:, :, :, :10], axis=-1))


def test_cache_default_positions_follow_the_slot_mask(loaded):
    config, model = loaded["pre_ln"]
    ref = reference("pre_ln")
    ids, mask = ref["input_ids"], ref["attention_mask"]
    slots = np.zeros((3, 12), np.int32)
    slots[:, :10] = mask
    cache = init_cache(config, 3, 12)
    first, cache = forward(model, ids[:, :5], slots, None, cache)
    second, cache = forward(model, ids[:, 5:], slots, None, cache)
    full, _ = forward(model, ids, mask)
    assert masked_max_abs(np.concatenate([first, second], axis=1), full, mask) < 1e-5


def test_single_row_cache_equals_full_pass_without_mask(loaded):
    config, model = loaded["pre_ln"]
    ids = jnp.arange(2, 9)[None]
    full, _ = forward(model, ids)
    cache = init_cache(config, 1, 7)
    positions = jnp.arange(7)[None]
    head, cache = forward(model, ids[:, :5], None, positions[:, :5], cache)
    tail, cache = forward(model, ids[:, 5:], None, positions[:, 5:], cache)
    np.testing.assert_allclose(np.concatenate([head, tail], axis=1), full, atol=1e-5)


def test_positions_from_mask_is_hugging_faces_rule():
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 1, 1]])
    expected = np.cumsum(mask, axis=1) * mask - 1
    np.testing.assert_array_equal(positions_from_mask(mask), expected)
    assert positions_from_mask(mask)[0].tolist() == [-1, -1, 0, 1, 2]


def test_padding_does_not_change_real_tokens(loaded):
    """A left-padded row gives the logits of the same row without padding."""
    _, model = loaded["post_ln_proj"]
    ref = reference("post_ln_proj")
    ids, mask = ref["input_ids"], ref["attention_mask"]
    alone, _ = forward(model, ids[2:, 6:])
    padded, _ = forward(model, ids, mask)
    np.testing.assert_allclose(padded[2, 6:], alone[0], atol=1e-5)


def test_save_load_round_trip_is_identical(tmp_path, fresh):
    config, model = fresh
    save_opt(tmp_path, config, model)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "opt" and written["architectures"] == ["OPTForCausalLM"]
    config2, model2 = load_opt(tmp_path)
    assert config2 == config
    before, after = nnx.state(model, nnx.Param), nnx.state(model2, nnx.Param)
    assert jax.tree.structure(before) == jax.tree.structure(after)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)
    tensors = load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in tensors
    assert tensors["model.decoder.layers.0.fc1.weight"].shape == (config.ffn_dim, config.hidden_size)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_resaved_keeps_hugging_face_tensors(tmp_path, loaded, name):
    config, model = loaded[name]
    save_opt(tmp_path, config, model)
    original = load_file(FIXTURES / name / "model.safetensors")
    resaved = load_file(tmp_path / "model.safetensors")
    assert set(original) == set(resaved)
    for tensor in original:
        np.testing.assert_array_equal(original[tensor], resaved[tensor], err_msg=tensor)


def test_decoder_prefix_and_sharded_checkpoints_load(tmp_path):
    tensors = load_file(FIXTURES / "pre_ln" / "model.safetensors")
    expected = nnx.state(load_opt(FIXTURES / "pre_ln")[1], nnx.Param)

    bare = tmp_path / "bare"  # the original facebook/opt-* names: decoder.* without model.
    bare.mkdir()
    shutil.copy(FIXTURES / "pre_ln" / "config.json", bare)
    save_file({name.removeprefix("model."): value for name, value in tensors.items()}, bare / "model.safetensors")

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(FIXTURES / "pre_ln" / "config.json", sharded)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({name: tensors[name] for name in part}, sharded / file)
    weight_map = {name: file for file, part in shards.items() for name in part}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    for folder in (bare, sharded):
        _, model = load_opt(folder)
        state = nnx.state(model, nnx.Param)
        assert jax.tree.structure(state) == jax.tree.structure(expected)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(a, b)


def _copy_fixture(tmp_path, name="pre_ln"):
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def test_missing_files_say_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download .*config.json and model.safetensors"):
        load_opt(tmp_path / "nowhere")
    folder = _copy_fixture(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json' is missing.*download"):
        load_opt(folder)
    folder = _copy_fixture(tmp_path, "post_ln_proj")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors.*download"):
        load_opt(folder)


def test_non_opt_config_is_refused(tmp_path):
    folder = _copy_fixture(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not an OPT checkpoint: model_type is 'gpt2'"):
        load_opt(folder)
    with pytest.raises(ConfigError, match="model_type is 'gpt2', expected 'opt'"):
        OPTConfig.from_hf_dict(config)


def test_missing_or_misshapen_tensors_are_named(tmp_path):
    folder = _copy_fixture(tmp_path)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.decoder.layers.1.fc2.bias"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="'model.decoder.layers.1.fc2.bias' is missing"):
        load_opt(folder)
    tensors["model.decoder.layers.1.fc2.bias"] = np.zeros(5, np.float32)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'model.decoder.layers.1.fc2.bias' has shape \(5,\)"):
        load_opt(folder)


@pytest.mark.parametrize("change, message", [
    (dict(hidden_size=100, num_attention_heads=12), "hidden_size .100. must be divisible by num_attention_heads"),
    (dict(vocab_size=0), "vocab_size must be an integer >= 1"),
    (dict(num_hidden_layers=-2), "num_hidden_layers must be an integer >= 1"),
    (dict(ffn_dim=2.5), "ffn_dim must be an integer"),
    (dict(dropout=1.5), r"dropout must be a probability in \[0, 1\)"),
    (dict(attention_dropout=-0.1), "attention_dropout must be a probability"),
    (dict(activation_function="swish"), "unknown activation_function 'swish'"),
    (dict(pad_token_id=600), r"pad_token_id must be None or an integer in \[0, vocab_size=512\)"),
    (dict(do_layer_norm_before="yes"), "do_layer_norm_before must be True or False"),
    (dict(init_std=0.0), "init_std must be > 0"),
    (dict(word_embed_proj_dim=0), "word_embed_proj_dim must be an integer >= 1"),
])
def test_bad_config_values_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        OPTConfig.preset("tiny", **change)


def test_presets_and_hf_dict_round_trip():
    opt125m = OPTConfig.preset("opt-125m")
    assert (opt125m.vocab_size, opt125m.hidden_size, opt125m.num_hidden_layers, opt125m.num_attention_heads,
            opt125m.ffn_dim, opt125m.max_position_embeddings, opt125m.word_embed_proj_dim) == (
        50272, 768, 12, 12, 3072, 2048, 768)
    assert (opt125m.pad_token_id, opt125m.bos_token_id, opt125m.eos_token_id) == (1, 2, 2)
    assert opt125m.do_layer_norm_before and opt125m.activation_function == "relu"
    for name in ("tiny", "small", "opt-125m"):
        config = OPTConfig.preset(name)
        assert OPTConfig.from_hf_dict(config.to_hf_dict()) == config
    assert OPTConfig.preset("tiny", vocab_size=300).vocab_size == 300
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        OPTConfig.preset("huge")
    # the keys of a Hub config.json that do not shape the network are ignored
    hub = dict(OPTConfig.preset("tiny").to_hf_dict(), torch_dtype="float16", prefix="</s>", _name_or_path="x",
               eos_token_id=[2])
    assert OPTConfig.from_hf_dict(hub) == OPTConfig.preset("tiny")
    with pytest.raises(ConfigError, match="tie_word_embeddings must be true"):
        OPTConfig.from_hf_dict(dict(hub, tie_word_embeddings=False))
    assert read_config(FIXTURES / "pre_ln").max_position_embeddings == 64


def test_init_matches_hugging_face_conventions(fresh):
    config, model = fresh
    embedding = np.asarray(model.embed_tokens.embedding[...])
    assert not embedding[config.pad_token_id].any()  # padding_idx row
    assert embedding.shape == (16, 16)
    assert model.embed_positions.embedding[...].shape == (config.max_position_embeddings + 2, 16)
    kernels = np.concatenate([np.ravel(layer.fc1.kernel[...]) for layer in model.layers]
                             + [np.ravel(layer.self_attn.q_proj.kernel[...]) for layer in model.layers])
    assert abs(kernels.std() - config.init_std) < 0.003  # 1024 draws: standard error 0.0005
    assert not np.asarray(model.layers[0].fc1.bias[...]).any()
    np.testing.assert_array_equal(model.layers[1].final_layer_norm.scale[...], np.ones(16))


def test_dropout_needs_a_key_and_is_reproducible(loaded):
    config, model = loaded["pre_ln"]
    assert config.dropout == 0.1
    ids = jnp.arange(2, 9)[None]  # the shape of the test above: the deterministic pass is compiled
    with pytest.raises(ValueError, match="needs a dropout_key"):
        model(ids, deterministic=False)
    clean, _ = forward(model, ids)
    noisy, _ = forward(model, ids, deterministic=False, dropout_key=jax.random.key(0))
    again, _ = forward(model, ids, deterministic=False, dropout_key=jax.random.key(0))
    other, _ = forward(model, ids, deterministic=False, dropout_key=jax.random.key(1))
    np.testing.assert_array_equal(noisy, again)
    assert not np.allclose(noisy, clean) and not np.allclose(noisy, other)


def test_functional_apply_is_pure_and_differentiable(loaded):
    _, model = loaded["proj_gelu_nobias"]
    apply, params = functional(model)
    ref = reference("proj_gelu_nobias")
    ids, mask = ref["input_ids"], ref["attention_mask"]
    grads = jax.jit(jax.grad(lambda p: apply(p, ids, mask)[0].mean()))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.isfinite(g).all() and np.any(g) for g in jax.tree.leaves(grads))


def _largest_fusion_of_a_training_gradient(layers: int) -> int:
    """Most operands of any fusion XLA builds for the loss gradient of a ``layers``-deep model."""
    apply, params = functional(_square_model(layers)[1])
    ids = jnp.ones((2, 8), jnp.int32)
    grad = jax.jit(jax.grad(lambda p, key: apply(p, ids, deterministic=False, dropout_key=key,
                                                 boundary=gradient_boundary)[0].mean()))
    text = grad.lower(params, jax.random.key(0)).compile().as_text()
    fusions = re.findall(r"= \S+ fusion\((.*?)\), kind", text)
    return max(operands.count("%") for operands in fusions)


@pytest.mark.slow  # 8 s; a check of XLA:CPU's fusion (speed), not of the numbers
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the boundary is a CPU-only loop")
def test_residual_gradient_is_not_fused_into_every_layer():
    # without the boundary XLA:CPU fuses the residual stream's whole gradient into each
    # layer's fusions: 48 operands at 2 layers, 159 at 8 (with it: 30 and 30)
    assert _largest_fusion_of_a_training_gradient(8) == _largest_fusion_of_a_training_gradient(2)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the boundary is a CPU-only loop")
def test_every_layer_has_its_five_gradient_boundaries():
    # the layer's input, both layer norms' outputs, attention's and the feed-forward block's
    # outputs: one loop each in the (deterministic) gradient, nothing else loops
    for layers in (1, 3):
        apply, params = functional(_square_model(layers)[1])
        grad = jax.jit(jax.grad(lambda p: apply(p, jnp.ones((2, 8), jnp.int32), boundary=gradient_boundary)[0].mean()))
        assert grad.lower(params).as_text().count("stablehlo.while") == 5 * layers


def test_forward_mode_derivatives_of_the_model(loaded):
    # the gradient boundaries are linear primitives: jax.jvp goes through the model too,
    # and forward and reverse mode agree: d/dt f(p + t v) = <grad f(p), v>
    _, model = loaded["pre_ln"]
    apply, params = functional(model)
    ids = jnp.arange(2, 9)[None]
    weights = jax.random.normal(jax.random.key(0), (1, 7, 128))
    f = lambda p: jnp.sum(apply(p, ids, boundary=gradient_boundary)[0] * weights)
    direction = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape, p.dtype), params)
    _, forward_mode = jax.jit(lambda p, v: jax.jvp(f, (p,), (v,)))(params, direction)
    gradient = jax.jit(jax.grad(f))(params)
    reverse_mode = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(gradient), jax.tree.leaves(direction)))
    np.testing.assert_allclose(forward_mode, reverse_mode, rtol=1e-4)


def test_shapes_dtypes_and_input_errors(loaded):
    config, model = loaded["pre_ln"]
    cache = init_cache(config, 2, 8, dtype=jnp.bfloat16)
    assert isinstance(cache, KVCache)
    assert cache.keys.dtype == cache.values.dtype == jnp.bfloat16 and cache.index.dtype == jnp.int32
    assert cache.values.shape == (2, 2, 4, 8, 8)  # (layers, batch, heads, slots, head_dim)
    with pytest.raises(ConfigError, match="max_length must be <= max_position_embeddings"):
        init_cache(config, 1, 65)
    with pytest.raises(ValueError, match="attention_mask must be"):
        model(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, max_length\)"):
        model(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3)), cache=cache)
    with pytest.raises(ValueError, match="input_ids must be"):
        model(jnp.ones((3,), jnp.int32))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(jnp.ones((1, 65), jnp.int32))
    with pytest.raises(ValueError, match=r"cache keys and values must be \(layers, batch, heads"):
        model(jnp.ones((3, 1), jnp.int32), cache=cache)
    old_layout = cache._replace(keys=cache.keys.swapaxes(2, 3), values=cache.values.swapaxes(2, 3))
    with pytest.raises(ValueError, match=r"got \(2, 2, 8, 4, 8\)"):  # (layers, batch, slots, heads, head_dim)
        model(jnp.ones((2, 1), jnp.int32), cache=old_layout)
    logits, new = forward(model, jnp.ones((2, 3), jnp.int32), cache=cache)
    assert logits.shape == (2, 3, 128) and logits.dtype == jnp.float32
    assert int(new.index) == 3 and new.keys.dtype == jnp.bfloat16


def test_bfloat16_parameters(loaded):
    _, half = load_opt(FIXTURES / "pre_ln", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert half.embed_tokens.embedding[...].dtype == jnp.bfloat16
    ref = reference("pre_ln")
    logits, _ = forward(half, ref["input_ids"], ref["attention_mask"])
    assert logits.dtype == jnp.bfloat16
    error = masked_max_abs(np.asarray(logits, np.float32), ref["logits"], ref["attention_mask"])
    assert error < 0.5  # bfloat16 keeps 8 bits of mantissa; logits are of order 3


def test_saved_model_config_must_match(tmp_path, fresh):
    config, model = fresh
    with pytest.raises(CheckpointError, match="differs"):
        save_opt(tmp_path, dataclasses.replace(config, vocab_size=33), model)
