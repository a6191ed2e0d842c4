"""Make the PyTorch parity fixtures of tests/fixtures/opt/ (needs torch and transformers).

    python scripts/make_opt_fixtures.py [--out tests/fixtures/opt]

For each tiny configuration in CONFIGS: a random OPTForCausalLM (fixed torch seed, weights
redrawn at a scale that gives well-separated logits), saved with
``save_pretrained(dir, safe_serialization=True)``, and ``logits.npz`` (a left-padded batch,
its mask, the eval-mode logits). For the "pre_ln" configuration also ``generate.npz``: token
ids from ``model.generate`` (greedy, greedy with repetition_penalty=2.0, beam search with 5
beams and repetition_penalty=2.0). The README next to the fixtures documents every array.

Checks run on the way (the script fails if one does): eager and SDPA attention agree; our
JAX model loaded with ``load_opt`` matches the PyTorch logits; ``save_opt`` writes a folder
that ``OPTForCausalLM.from_pretrained`` loads to the same logits. No pickle is written.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import OPTConfig as HFOPTConfig
from transformers import OPTForCausalLM as HFOPTForCausalLM

SEED = 20260521
VOCAB = 128
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
              max_position_embeddings=64, pad_token_id=1, bos_token_id=2, eos_token_id=2, dropout=0.1,
              attention_dropout=0.0)
CONFIGS = {
    # opt-125m's layout: pre-LN, relu, final layer norm
    "pre_ln": dict(COMMON),
    # opt-350m's layout: post-LN (no final layer norm) and project_in/out (16 -> 32 -> 16)
    "post_ln_proj": dict(COMMON, do_layer_norm_before=False, word_embed_proj_dim=16),
    # the other switches: project_in/out, gelu, no biases, layer norms without parameters
    "proj_gelu_nobias": dict(COMMON, word_embed_proj_dim=24, activation_function="gelu", enable_bias=False,
                             layer_norm_elementwise_affine=False),
}
# the logits batch: 3 rows of 10 slots, left-padded by 0, 3 and 6 (pad id 1, first real token bos 2)
LOGITS_PADDING = (0, 3, 6)
LOGITS_WIDTH = 10
# generation: 3 prompts of 8 slots, without padding, and left-padded by 0, 2 and 5
PROMPT_WIDTH = 8
PROMPT_PADDING = {"nopad": (0, 0, 0), "leftpad": (0, 2, 5)}
NEW_TOKENS = 12


def build_model(name: str, settings: dict) -> HFOPTForCausalLM:
    torch.manual_seed(SEED + sum(map(ord, name)))
    config = HFOPTConfig(**settings)
    config._attn_implementation = "eager"
    model = HFOPTForCausalLM(config).eval()
    with torch.no_grad():  # redraw: HF's init_std 0.02 leaves logits nearly tied
        for pname, p in model.named_parameters():
            if pname.endswith("embed_tokens.weight"):
                p.normal_(0.0, 0.5)
            elif pname.endswith("embed_positions.weight"):
                p.normal_(0.0, 0.3)
            elif "layer_norm" in pname and pname.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:  # Linear (out, in)
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
    assert model.lm_head.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr(), "lm_head not tied"
    return model


def padded_batch(generator: np.random.Generator, width: int, padding) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(padding), width), 1, np.int64)
    mask = np.zeros((len(padding), width), np.int64)
    for row, pad in enumerate(padding):
        ids[row, pad] = 2  # bos, as the OPT tokenizer starts every text
        ids[row, pad + 1:] = generator.integers(3, VOCAB, width - pad - 1)
        mask[row, pad:] = 1
    return ids, mask


def torch_logits(model, ids, mask, implementation="eager") -> np.ndarray:
    model.config._attn_implementation = implementation
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    model.config._attn_implementation = "eager"
    return logits.numpy().astype(np.float32)


def masked_max_diff(a, b, mask) -> float:
    return float(np.abs(a - b)[mask.astype(bool)].max())


def jax_logits(directory: Path, ids, mask) -> np.ndarray:
    from jaxcollapse.lm.checkpoint import load_opt

    _, model = load_opt(directory)
    logits, _ = model(ids.astype(np.int32), mask.astype(np.int32))
    return np.asarray(logits)


def check_save_opt_round_trip(directory: Path, ids, mask, reference) -> float:
    """save_opt's folder loads in transformers to the same logits."""
    from jaxcollapse.lm.checkpoint import load_opt, save_opt

    config, model = load_opt(directory)
    with tempfile.TemporaryDirectory() as tmp:
        save_opt(tmp, config, model)
        loaded = HFOPTForCausalLM.from_pretrained(tmp, attn_implementation="eager").eval()
        diff = masked_max_diff(torch_logits(loaded, ids, mask), reference, mask)
    assert diff < 1e-5, f"save_opt -> from_pretrained changed the logits by {diff}"
    return diff


def generate(model, ids, mask, **settings):
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             do_sample=False, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS,
                             pad_token_id=1, bos_token_id=2, eos_token_id=2, return_dict_in_generate=True,
                             output_logits=True, output_scores=True, **settings)
    return out


def make_generation(model, generator, directory: Path) -> dict:
    arrays, notes = {}, {}
    for prompts, padding in PROMPT_PADDING.items():
        ids, mask = padded_batch(generator, PROMPT_WIDTH, padding)
        arrays[f"{prompts}_input_ids"], arrays[f"{prompts}_attention_mask"] = ids, mask
        greedy = generate(model, ids, mask, num_beams=1)
        arrays[f"{prompts}_greedy_sequences"] = greedy.sequences.numpy()
        logits = torch.stack(greedy.logits).numpy().astype(np.float32)  # (steps, batch, vocab)
        arrays[f"{prompts}_greedy_logits"] = logits
        top2 = np.sort(logits, axis=-1)[..., -2:]
        notes[f"{prompts}_greedy_min_top2_gap"] = float((top2[..., 1] - top2[..., 0]).min())
        rep = generate(model, ids, mask, num_beams=1, repetition_penalty=2.0)
        arrays[f"{prompts}_greedy_rep2_sequences"] = rep.sequences.numpy()
        beam = generate(model, ids, mask, num_beams=5, repetition_penalty=2.0, early_stopping=False,
                        length_penalty=1.0, num_return_sequences=1)
        arrays[f"{prompts}_beam5_rep2_sequences"] = beam.sequences.numpy()
        arrays[f"{prompts}_beam5_rep2_scores"] = beam.sequences_scores.numpy().astype(np.float32)
        # the plain generate call of the brief (no return_dict) gives the same ids
        with torch.no_grad():
            plain = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), num_beams=5,
                                   do_sample=False, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS,
                                   repetition_penalty=2.0)
        assert np.array_equal(plain.numpy(), beam.sequences.numpy())
    arrays = {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in arrays.items()}
    np.savez(directory / "generate.npz", **arrays)
    return notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "opt"))
    out = Path(parser.parse_args().out)
    generator = np.random.default_rng(SEED)
    summary = {}
    for name, settings in CONFIGS.items():
        directory = out / name
        if directory.exists():
            shutil.rmtree(directory)
        model = build_model(name, settings)
        model.save_pretrained(directory, safe_serialization=True)
        ids, mask = padded_batch(generator, LOGITS_WIDTH, LOGITS_PADDING)
        logits = torch_logits(model, ids, mask)
        sdpa = masked_max_diff(torch_logits(model, ids, mask, "sdpa"), logits, mask)
        assert sdpa < 1e-5, f"{name}: eager and sdpa attention differ by {sdpa}"
        np.savez(directory / "logits.npz", input_ids=ids.astype(np.int32), attention_mask=mask.astype(np.int32),
                 logits=logits)
        info = {"eager_vs_sdpa": sdpa, "logit_std": float(logits[mask.astype(bool)].std()),
                "jax_vs_torch": masked_max_diff(jax_logits(directory, ids, mask), logits, mask),
                "save_opt_round_trip": check_save_opt_round_trip(directory, ids, mask, logits)}
        if name == "pre_ln":
            info.update(make_generation(model, generator, directory))
        summary[name] = info
    print(json.dumps(summary, indent=2))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"fixtures: {total / 1024:.0f} KiB in {out}")


if __name__ == "__main__":
    main()
