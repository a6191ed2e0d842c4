"""Recursive VAE training, one generation at a time, with checkpoints and resume.

Generation 0 is the real training set; generation n >= 1 is a fresh VAE trained on D_{n-1}
(the paper's generation n - 1), for ``runs`` independent runs at once (``jax.vmap`` over
their keys). D_n holds as many images as the real training set: decoder samples of
generation n (``replace``), a fraction of real images drawn afresh each generation plus
samples (``real-fraction:F``), or everything so far (``accumulate``).

A run folder holds ``config.json``, ``checkpoints/generation_<n>.safetensors`` (every
run's parameters, written atomically as soon as the generation is trained), and, rewritten
after every generation, ``summary.csv`` and ``latents.npz``. Every random key derives
from the seed, the generation and the run, so a run that is stopped at any moment and
started again with the same folder loads the finished generations, rebuilds their data
from the checkpoints and ends bit-identical to an uninterrupted run (tested).

Metrics per generation (mean and standard error across runs): ``heldout_nelbo``, the
negative ELBO of held-out real images under the generation's model; ``latent_sd``, the
spread of the latent means of the generation's data under the *first* model's encoder
(the paper's generation-0 encoder, Figure 8); ``class_entropy``, the entropy of the digit
classes a classifier trained once on real images assigns to the data (mode collapse,
measured); ``train_loss``, the last epoch's loss.

Example:
    >>> import tempfile
    >>> study = VAEStudy(generations=1, runs=2, dataset="digits", training=TrainConfig(epochs=1, batch_size=128))
    >>> summary = run_vae(study, tempfile.mkdtemp() + "/vae", figures=False, progress=False)
    >>> [row["generation"] for row in summary]
    [0, 1]
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._files import atomic_bytes, claim_run_folder
from ._validation import ConfigError, require_choice, require_int
from .images import DATASETS, load_images
from .policies import DataPolicy
from .vae_model import (
    SAMPLE_MODES, TrainConfig, VAEConfig, _latents, _pixels, decode_means, encode_means, negative_elbo,
)
from .vae_train import train_runs

__all__ = ["VAEStudy", "run_vae", "default_model", "VAE_REGIMES"]

VAE_REGIMES = ("replace", "real-fraction", "accumulate")
LATENT_KEEP = 500  # latent means kept per run and generation for the density figure


def default_model(dataset: str) -> VAEConfig:
    """The paper's conv VAE for 28x28 MNIST; a small dense one for the 8x8 digits."""
    if dataset == "digits":
        return VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(64,))
    return VAEConfig()


@dataclass(frozen=True)
class VAEStudy:
    generations: int = 5
    runs: int = 5
    dataset: str = "mnist5k"
    model: VAEConfig | None = None  # None: default_model(dataset)
    training: TrainConfig = field(default_factory=TrainConfig)
    sample_mode: str = "mean"
    policy: DataPolicy = field(default_factory=DataPolicy)
    heldout: int = 500
    seed: int = 0

    command: ClassVar[str] = "vae"

    def __post_init__(self):
        require_int("generations", self.generations, 1)
        require_int("runs", self.runs, 1)
        require_choice("dataset", self.dataset, DATASETS)
        require_choice("sample mode", self.sample_mode, SAMPLE_MODES)
        require_int("heldout", self.heldout, 1)
        require_int("seed", self.seed, 0)
        if self.policy.kind not in VAE_REGIMES:
            raise ConfigError(f"VAE runs support the regimes {', '.join(VAE_REGIMES)}; got {self.policy.describe()!r}")
        if self.model is None:
            object.__setattr__(self, "model", default_model(self.dataset))

    def to_json(self) -> dict:
        return {
            "generations": self.generations, "runs": self.runs, "dataset": self.dataset,
            "model": asdict(self.model), "training": asdict(self.training), "sample_mode": self.sample_mode,
            "regime": self.policy.to_json(), "heldout": self.heldout, "seed": self.seed,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "VAEStudy":
        model = dict(blob["model"])
        model = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
        return cls(blob["generations"], blob["runs"], blob["dataset"], model, TrainConfig(**blob["training"]),
                   blob["sample_mode"], DataPolicy.from_json(blob["regime"]), blob["heldout"], blob["seed"])


# ---------------------------------------------------------------------------- files

def _leaf_name(key_path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


def _save_checkpoint(path: Path, trained) -> None:
    """Every run's parameters and epoch losses, (runs, ...) each, as safetensors."""
    from safetensors.numpy import save

    flat = {_leaf_name(key_path): np.asarray(leaf) for key_path, leaf in jax.tree_util.tree_flatten_with_path(trained)[0]}
    atomic_bytes(path, save(flat))


def _load_checkpoint(path: Path, template):
    """The (params, losses) of ``_save_checkpoint``, shaped like ``template``."""
    from safetensors.numpy import load_file

    stored = load_file(str(path))
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for key_path, leaf in paths:
        name = _leaf_name(key_path)
        if name not in stored or stored[name].shape != leaf.shape:
            raise ConfigError(f"checkpoint {path} does not match this study's model (parameter {name}); "
                              f"use another --out or --force to start over")
        leaves.append(jnp.asarray(stored[name]))
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------------------- metrics

class _Classifier(nnx.Module):
    def __init__(self, pixels: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(pixels, 128, rngs=rngs)
        self.output = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, images):
        return self.output(nnx.relu(self.hidden(images.reshape(images.shape[0], -1))))


def _train_classifier(images, labels, seed: int, epochs: int = 10):
    """A small dense classifier of real digits (fixed seed: deterministic)."""
    model = _Classifier(images[0].size, nnx.Rngs(seed))
    graph, params = nnx.split(model)
    optimizer = optax.adam(1e-3)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    batch = 128
    steps = len(images) // batch

    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graph, params)(x), y).mean()

    def epoch(carry, key):
        order = jax.random.permutation(key, len(images))[: steps * batch].reshape(steps, batch)

        def step(carry, picks):
            params, state = carry
            grads = jax.grad(loss)(params, images[picks], labels[picks])
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, carry, order)[0], None

    run = jax.jit(lambda: jax.lax.scan(epoch, (params, optimizer.init(params)),
                                       jax.random.split(jax.random.key(seed), epochs))[0][0])
    trained = run()
    return lambda x: nnx.merge(graph, trained)(x)


def _class_entropy(classify, images) -> float:
    counts = np.bincount(np.asarray(jnp.argmax(classify(images), axis=-1)), minlength=10)
    p = counts / counts.sum()
    return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


def _latent_sd(latents) -> float:
    return float(np.mean(np.std(np.asarray(latents, np.float64), axis=0)))


# ---------------------------------------------------------------------------- the run

# Images per run in one compiled call of sampling and encoding, so that their memory stays
# bounded whatever the data set (the conv decoder's largest array holds ~130 KB an image:
# 5 runs of the 60000 MNIST digits at once would need ~40 GB).
EVAL_BATCH = 2048


def _over_image_batches(fn, arrays):
    """``fn(batch)`` over slices of ``arrays`` (runs, N, ...) along N, at most EVAL_BATCH
    at a time (a short last slice is padded, so one compilation serves every slice), the
    results joined along N."""
    count = arrays.shape[1]
    if count <= EVAL_BATCH:
        return fn(arrays)
    parts = []
    for first in range(0, count, EVAL_BATCH):
        batch = arrays[:, first:first + EVAL_BATCH]
        short = EVAL_BATCH - batch.shape[1]
        if short:
            batch = jnp.concatenate([batch, jnp.zeros((batch.shape[0], short, *batch.shape[2:]), batch.dtype)], axis=1)
        parts.append(fn(batch)[:, :EVAL_BATCH - short])
    return jnp.concatenate(parts, axis=1)


def _keys(study: VAEStudy, generation: int):
    """(train keys, sample keys, policy key) of a generation: derived, never split across runs."""
    base = jax.random.fold_in(jax.random.key(study.seed), generation)
    train_root, sample_root, policy_key = jax.random.split(base, 3)
    runs = jnp.arange(study.runs)
    return (jax.vmap(lambda r: jax.random.fold_in(train_root, r))(runs),
            jax.vmap(lambda r: jax.random.fold_in(sample_root, r))(runs), policy_key)


def _next_data(study, generation, samples, real, pool):
    """D_n from the generation's samples (runs, N, H, W, 1), the real set and the pool."""
    kind = study.policy.kind
    if kind == "replace":
        return samples, pool
    if kind == "accumulate":
        pool = jnp.concatenate([pool, samples], axis=1)
        return pool, pool
    count = int(round(study.policy.fraction * real.shape[0]))
    policy_key = _keys(study, generation)[2]
    picks = jax.vmap(lambda r: jax.random.permutation(jax.random.fold_in(policy_key, r), real.shape[0])[:count])(
        jnp.arange(study.runs))
    return samples.at[:, :count].set(real[picks]), pool


def run_vae(study: VAEStudy, folder, *, force: bool = False, figures: bool = True, progress: bool = True,
            stop_after: int | None = None) -> list[dict]:
    """Run (or resume) ``study`` in ``folder``; returns the summary rows. ``stop_after``
    ends after that generation, as an interruption would (for tests)."""
    folder = Path(folder)
    config = {"format_version": 1, "command": "vae", "study": json.loads(json.dumps(study.to_json()))}
    claim_run_folder(folder, config, force=force)
    checkpoints = folder / "checkpoints"
    if force and checkpoints.exists():
        for old in checkpoints.glob("generation_*.safetensors"):
            old.unlink()
    checkpoints.mkdir(parents=True, exist_ok=True)

    data = load_images(study.dataset)
    order = np.random.default_rng(study.seed).permutation(len(data.images))
    if study.heldout >= len(order):
        raise ConfigError(f"heldout must be < the {len(order)} images of {study.dataset}; got {study.heldout}")
    if tuple(data.images.shape[1:3]) != tuple(study.model.image_shape):
        raise ConfigError(f"{study.dataset} images are {data.images.shape[1]}x{data.images.shape[2]}; the model expects "
                          f"{study.model.image_shape[0]}x{study.model.image_shape[1]}")
    heldout = jnp.asarray(data.images[order[: study.heldout]])
    real = jnp.asarray(data.images[order[study.heldout:]])
    classify = _train_classifier(data.images[order[study.heldout:]], data.labels[order[study.heldout:]], study.seed)
    model, training = study.model, study.training

    def fit_runs(keys, images):  # a Python loop over compiled steps for the conv model on a CPU (see train)
        return train_runs(keys, model, training, images)

    def trained_shape(keys, images):
        return jax.eval_shape(lambda k, x: train_runs(k, model, training, x, loop="scan"), keys, images)
    decode_batch = jax.jit(jax.vmap(lambda params, z: decode_means(model, params, z)))
    encode_batch = jax.jit(jax.vmap(lambda params, images: encode_means(model, params, images)))

    def sample_runs(keys, params):  # generate(key, ...) for each run, decoded EVAL_BATCH images at a time
        z, pixel_keys = jax.vmap(lambda key: _latents(key, model, real.shape[0]))(keys)
        means = _over_image_batches(lambda batch: decode_batch(params, batch), z)
        return jax.vmap(lambda key, means: _pixels(key, means, study.sample_mode))(pixel_keys, means)

    def encode_runs(params, images):
        return _over_image_batches(lambda batch: encode_batch(params, batch), images)

    elbo_runs = jax.jit(jax.vmap(lambda params: negative_elbo(jax.random.key(study.seed), model, params, heldout)))

    current = jnp.broadcast_to(real, (study.runs, *real.shape))
    pool = current
    first_params = None
    rows, latents, grids = [], {}, {}
    last = study.generations if stop_after is None else min(stop_after, study.generations)
    for generation in range(1, last + 1):
        path = checkpoints / f"generation_{generation}.safetensors"
        train_keys, sample_keys, _ = _keys(study, generation)
        if path.is_file():  # finished before an interruption: never trained again
            params, losses = _load_checkpoint(path, trained_shape(train_keys, current))
        else:
            params, losses = fit_runs(train_keys, current)
            _save_checkpoint(path, (params, losses))
        if first_params is None:
            first_params = params
            rows.append(_row(0, None, current, encode_runs(first_params, current), None, None, classify))
            latents["generation_0"] = np.asarray(encode_runs(first_params, current))[:, :LATENT_KEEP]
        samples = sample_runs(sample_keys, params)
        grids[generation] = np.asarray(samples[0, :36])
        current, pool = _next_data(study, generation, samples, real, pool)
        encoded = encode_runs(first_params, samples)
        latents[f"generation_{generation}"] = np.asarray(encoded)[:, :LATENT_KEEP]
        rows.append(_row(generation, real.shape[0], samples, encoded, elbo_runs(params), losses[:, -1], classify))
        _write_summary(folder, rows, latents)
        if progress:
            print(f"generation {generation}/{study.generations}: held-out -ELBO "
                  f"{rows[-1]['heldout_nelbo_mean']:.2f}, latent sd {rows[-1]['latent_sd_mean']:.3f}, "
                  f"class entropy {rows[-1]['class_entropy_mean']:.3f}", flush=True)
    if figures and last == study.generations:
        from .plots import write_vae_figures

        grids[0] = np.asarray(real[:36])
        write_vae_figures(folder, latents, grids)
    return rows


def _mean_se(values):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se)


def _row(generation, samples, images, encoded, elbos, losses, classify) -> dict:
    row = {"generation": generation, "samples": samples}
    per_run = {
        "heldout_nelbo": None if elbos is None else np.asarray(elbos),
        "latent_sd": [_latent_sd(e) for e in np.asarray(encoded)],
        "class_entropy": [_class_entropy(classify, run_images) for run_images in images],
        "train_loss": None if losses is None else np.asarray(losses),
    }
    for name, values in per_run.items():
        row[f"{name}_mean"], row[f"{name}_se"] = _mean_se(values) if values is not None else (None, None)
    return row


def _write_summary(folder: Path, rows, latents) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_bytes(folder / "summary.csv", buffer.getvalue().encode())
    stream = io.BytesIO()
    np.savez(stream, **latents)
    atomic_bytes(folder / "latents.npz", stream.getvalue())
