"""Recursive VAE training: the VAE family on the one driver's host executor.

Generation 0 is the real training set; generation n >= 1 is a fresh VAE trained on D_{n-1}
(the paper's generation n - 1), for ``runs`` independent runs. D_n holds as many images
as the real training set, built by any data policy of the engine
(:mod:`jaxcollapse.policies`): decoder samples of generation n (``replace``), a fraction
of real images drawn afresh each generation plus samples (``real-fraction:F``), every
image so far (``accumulate``), fresh real images, resamples of the pool, or the paper's
mixture ``mix:A,B,G``.

A run folder holds ``config.json``, ``checkpoints/`` (the host executor's artefacts:
``generation_<n>/params_0-<R>.safetensors``, every run's parameters and epoch losses,
written atomically as soon as the generation is trained, the images it decoded and its
metrics; see :mod:`jaxcollapse.host`), and at the end ``summary.csv``, ``latents.npz``,
figures and ``report.md``. Every random key derives from the seed, the generation and the
run, so a run that is stopped at any moment and started again with the same folder loads
every finished stage, rebuilds the data sets from the saved images and ends bit-identical
to an uninterrupted run (tested).

Metrics per generation (mean and standard error across runs): ``heldout_nelbo``, the
negative ELBO of held-out real images under the generation's model; ``latent_sd``, the
spread of the latent means of the generation's data under the *first* model's encoder
(the paper's generation-0 encoder, Figure 8); ``class_entropy``, the entropy of the digit
classes a classifier trained once on real images assigns to the data (mode collapse,
measured); ``train_loss``, the last epoch's loss.

Examples:
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
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import vae_train
from ._files import atomic_bytes, claim_run_folder, folder_lock
from ._validation import ConfigError, require_choice, require_int, require_memory
from .images import DATASETS, load_images
from .policies import REGIMES, DataPolicy
from .vae_model import SAMPLE_MODES, TrainConfig, VAEConfig, encode_means, negative_elbo
from .vae_train import vae_family

__all__ = ["VAEStudy", "run_vae", "default_model", "VAE_REGIMES"]

VAE_REGIMES = REGIMES  # every data policy of the engine
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
        require_int("generations", self.generations, 1, 10_000)
        require_int("runs", self.runs, 1, 1000)
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

class _Stopped(Exception):
    """``run_vae(stop_after=...)`` ends the run here, as an interruption would."""


def _check_memory(study: VAEStudy, count: int) -> None:
    """Refuse, before any work, a run whose parameters, optimiser state and data buffers
    cannot fit in memory (float32 throughout; runs trained at once on every platform but
    the conv model on a CPU, which trains them in turn)."""
    from .vae_model import parameter_count

    model = study.model
    pixels = model.pixels
    at_once = 1 if (model.architecture == "conv" and jax.default_backend() == "cpu") else study.runs
    pool = study.policy.pool_rows(np.full(study.generations, count))
    needed = 4 * (4 * parameter_count(model) * at_once + study.runs * (2 * pool + 2 * count) * pixels)
    require_memory("this VAE run", needed, "lower --runs or --latent, or use a smaller --dataset or regime "
                   "(accumulate keeps every generation's images)")


METRIC_NAMES = ("heldout_nelbo", "latent_sd", "class_entropy", "train_loss", "latents", "grid")


def run_vae(study: VAEStudy, folder, *, force: bool = False, figures: bool = True, progress: bool = True,
            stop_after: int | None = None) -> list[dict]:
    """Run (or resume) ``study`` in ``folder``; returns the summary rows. ``stop_after``
    ends after that generation, as an interruption would (for tests).

    The chain is the VAE family (:func:`jaxcollapse.vae.vae_family`) on the host
    executor (:func:`jaxcollapse.simulate` of a :func:`~jaxcollapse.programs.host_program`):
    D_0 is the real training set (in a random order: a draw without replacement from the
    empirical p_0), every later D_n as many images, built by the study's data policy
    (any of :data:`jaxcollapse.policies.REGIMES`); every stage's result is kept in
    ``checkpoints/``."""
    with folder_lock(folder):  # one writer per run folder
        return _run_vae(study, folder, force=force, figures=figures, progress=progress, stop_after=stop_after)


def _run_vae(study, folder, *, force, figures, progress, stop_after):
    from .engine import simulate
    from .programs import host_program

    folder = Path(folder)
    config = {"format_version": 2, "command": "vae", "study": json.loads(json.dumps(study.to_json()))}
    claim_run_folder(folder, config, force=force)
    checkpoints = folder / "checkpoints"
    if force and checkpoints.exists():
        shutil.rmtree(checkpoints)

    data = load_images(study.dataset)
    order = np.random.default_rng(study.seed).permutation(len(data.images))
    if study.heldout >= len(order):
        raise ConfigError(f"heldout must be < the {len(order)} images of {study.dataset}; got {study.heldout}")
    if tuple(data.images.shape[1:3]) != tuple(study.model.image_shape):
        raise ConfigError(f"{study.dataset} images are {data.images.shape[1]}x{data.images.shape[2]}; the model expects "
                          f"{study.model.image_shape[0]}x{study.model.image_shape[1]}")
    heldout = jnp.asarray(data.images[order[: study.heldout]])
    real_images = data.images[order[study.heldout:]]
    count = len(real_images)
    _check_memory(study, count)
    real = jnp.asarray(real_images.reshape(count, -1))
    classify = _train_classifier(real_images, data.labels[order[study.heldout:]], study.seed)
    model = study.model
    family = vae_family(model, study.training, study.sample_mode)
    shape = (*model.image_shape, 1)
    encode_batch = jax.jit(jax.vmap(lambda params, images: encode_means(model, params, images)))
    elbo_runs = jax.jit(jax.vmap(lambda params: negative_elbo(jax.random.key(study.seed), model, params, heldout)))

    def sample_initial(key, n):  # the real training set, in a random order
        return real[jax.random.permutation(key, count)[:n]]

    def metrics(generation):
        images = jnp.asarray(generation.samples).reshape(*generation.samples.shape[:2], *shape)
        first = generation.reference.params
        encoded = vae_train.over_image_batches(lambda batch: encode_batch(first, batch), images)
        runs = images.shape[0]
        fitted = generation.params
        values = {
            "heldout_nelbo": np.full(runs, np.nan) if fitted is None else np.asarray(elbo_runs(fitted.params)),
            "latent_sd": np.array([_latent_sd(e) for e in np.asarray(encoded)]),
            "class_entropy": np.array([_class_entropy(classify, run_images) for run_images in images]),
            "train_loss": np.full(runs, np.nan) if fitted is None else np.asarray(fitted.losses[:, -1]),
            "latents": np.asarray(encoded)[:, :LATENT_KEEP],
            "grid": np.asarray(images[:, :36]),
        }
        if progress and generation.index:
            print(f"generation {generation.index}/{study.generations}: held-out -ELBO "
                  f"{np.mean(values['heldout_nelbo']):.2f}, latent sd {np.mean(values['latent_sd']):.3f}, "
                  f"class entropy {np.mean(values['class_entropy']):.3f}", flush=True)
        return values

    def on_stage(generation, stage, first, end):
        if stop_after is not None and generation == stop_after and stage == "score" and end == study.runs:
            raise _Stopped

    program = host_program(family, study.policy, np.full(study.generations, count), sample_initial,
                           metrics=metrics, metric_names=METRIC_NAMES, on_stage=on_stage)
    try:
        result = simulate(program, num_chains=study.runs, seed=study.seed, record="trajectories",
                          checkpoint=checkpoints, identity=study.to_json(), progress=progress)
    except _Stopped:
        return []
    values = result.trajectories
    rows = [_row(generation, None if generation == 0 else count, values, generation)
            for generation in range(study.generations + 1)]
    latents = {f"generation_{generation}": values["latents"][generation] for generation in range(study.generations + 1)}
    _write_summary(folder, rows, latents)
    if figures:
        from .plots import write_vae_figures

        write_vae_figures(folder, latents, {generation: values["grid"][generation, 0]
                                            for generation in range(study.generations + 1)})
    return rows


def _mean_se(values):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se)


def _row(generation, samples, values, index) -> dict:
    row = {"generation": generation, "samples": samples}
    for name in ("heldout_nelbo", "latent_sd", "class_entropy", "train_loss"):
        per_run = values[name][index]
        mean_se = (None, None) if np.all(np.isnan(per_run)) else _mean_se(per_run)
        row[f"{name}_mean"], row[f"{name}_se"] = mean_se
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
