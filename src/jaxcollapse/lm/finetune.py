"""Fine-tuning and scoring of a causal language model on fixed-length token blocks.

The authors' recipe (Hugging Face ``run_clm``): every block of ``L`` tokens is one
training sequence, the loss is the mean next-token cross-entropy over its ``L - 1``
predicted positions; AdamW with a cosine learning-rate schedule from ``learning_rate`` down
to ``final_learning_rate``; dropout on during training; after every epoch the model is
scored on the validation blocks and the best epoch's parameters are kept.

The model enters as a pure function ``apply(params, input_ids, attention_mask,
position_ids, cache, deterministic=..., dropout_key=...) -> (logits, cache)``
(:func:`jaxcollapse.lm.opt.functional`). Each optimiser step is compiled once and driven
from Python, so a progress meter can follow it and so that no convolution-like kernel runs
inside an XLA loop (see :mod:`jaxcollapse.vae_train`). On a CPU the step also computes its
gradient the way XLA:CPU runs fastest (:func:`training_apply`, :func:`train_chunk_rows`),
the same gradient up to rounding.

Examples:
    >>> import jax, numpy as np
    >>> from flax import nnx
    >>> from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional
    >>> config = OPTConfig.preset("tiny", vocab_size=16)
    >>> apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    >>> blocks = np.tile(np.arange(8, dtype=np.int32) + 3, (32, 1))   # 3 4 5 ... 10, always
    >>> tuned, history = finetune(jax.random.key(0), apply, params, blocks, blocks[:8],
    ...                           FinetuneConfig(epochs=3, batch_size=8, learning_rate=3e-3))
    >>> history["valid_loss"][-1] < history["valid_loss"][0]
    True
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validation import ConfigError, require_int, require_positive
from .._xla_cpu.fusion import gradient_boundary, value_and_grad_in_lanes

__all__ = [
    "FinetuneConfig", "finetune", "make_train_step", "training_apply", "train_chunk_rows", "block_nll", "score_blocks",
    "perplexity",
]


@dataclass(frozen=True)
class FinetuneConfig:
    """AdamW, cosine schedule, batch and epochs; ``keep_best`` keeps the epoch with the
    lowest validation loss (the authors' ``load_best_model_at_end``).

    Defaults are the authors' for a pretrained OPT (lr 2e-5 down to 1e-6, 5 epochs,
    batch 128); a model trained from scratch on a CPU wants a larger rate (the CLI uses
    1e-3 for the ``tiny`` and ``small`` presets).
    """

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 2e-5
    final_learning_rate: float = 1e-6
    weight_decay: float = 0.0
    keep_best: bool = True
    dropout: bool = True

    def __post_init__(self):
        require_int("epochs", self.epochs, 1)
        require_int("batch_size", self.batch_size, 1)
        require_positive("learning_rate", self.learning_rate)
        if not np.isfinite(self.final_learning_rate) or not 0 <= self.final_learning_rate <= self.learning_rate:
            raise ConfigError(f"final_learning_rate must lie in [0, learning_rate={self.learning_rate}]; "
                              f"got {self.final_learning_rate!r}")
        if not np.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")

    def optimizer(self, total_steps: int) -> optax.GradientTransformation:
        schedule = optax.cosine_decay_schedule(self.learning_rate, max(total_steps, 1),
                                               alpha=self.final_learning_rate / self.learning_rate)
        return optax.adamw(schedule, weight_decay=self.weight_decay)


def block_nll(apply: Callable, params, blocks, *, deterministic: bool = True, dropout_key=None):
    """Summed next-token negative log-likelihood of each block (B, L) -> (B,), over its
    ``L - 1`` predicted positions (nats). ``apply`` is a functional OPT (it takes
    ``head_positions``)."""
    # the head only at the L - 1 predicting positions, and logsumexp minus the target's
    # logit rather than a full log-softmax then a gather: the same value, cheaper
    # (benchmarks/lm.py measures both)
    logits, _ = apply(params, blocks, None, None, None, deterministic=deterministic, dropout_key=dropout_key,
                      head_positions=slice(None, -1))
    logits = logits.astype(jnp.float32)
    target = jnp.take_along_axis(logits, blocks[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(jax.nn.logsumexp(logits, axis=-1) - target, axis=-1)


# On a CPU a training batch of at least 2 x CPU_TRAIN_CHUNK_ROWS blocks goes through the
# model in CPU_TRAIN_CHUNKS chunks computed side by side (jaxcollapse._xla_cpu.fusion.
# value_and_grad_in_lanes): the tiny OPT's operations are too small for XLA:CPU to spread
# one over two cores, two independent chunks are not. Measured, interleaved: the tiny
# preset at batch 32 5-17 % faster a step, the small preset 4-5 %; opt-125m at batch 8
# (chunks of 4 blocks) 2-4 % slower, hence the floor.
CPU_TRAIN_CHUNK_ROWS, CPU_TRAIN_CHUNKS = 16, 2


def train_chunk_rows(batch_rows: int) -> int | None:
    """Blocks per chunk of a training batch of ``batch_rows`` blocks, None for one pass."""
    if jax.default_backend() != "cpu" or batch_rows < CPU_TRAIN_CHUNKS * CPU_TRAIN_CHUNK_ROWS:
        return None
    return -(-batch_rows // CPU_TRAIN_CHUNKS)


def training_apply(apply: Callable) -> Callable:
    """``apply`` (a functional OPT, which takes ``boundary``) as a training step calls it: on
    a CPU with a gradient boundary (``jaxcollapse._xla_cpu.fusion.gradient_boundary``) at
    each of the model's ``boundary`` points, where the gradient fans out and XLA:CPU would
    otherwise recompute it in every consumer (see :class:`~jaxcollapse.lm.opt.OPTForCausalLM`);
    elsewhere ``apply`` itself. The same values and gradients either way.

    Examples:
        >>> from flax import nnx
        >>> from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional
        >>> apply, params = functional(OPTForCausalLM(OPTConfig.preset("tiny", vocab_size=16), rngs=nnx.Rngs(0)))
        >>> ids = jnp.ones((1, 4), jnp.int32)
        >>> bool(jnp.array_equal(training_apply(apply)(params, ids)[0], apply(params, ids)[0]))
        True
    """
    if jax.default_backend() != "cpu":
        return apply
    return functools.partial(apply, boundary=gradient_boundary)


def make_train_step(apply: Callable, optimizer: optax.GradientTransformation, *, dropout: bool = True,
                    nll: Callable | None = None):
    """One compiled AdamW step on a batch of blocks with 0/1 row weights (a padded last
    batch): ``step(params, opt_state, blocks, weights, key) -> (params, opt_state, loss)``,
    ``loss`` the mean token NLL of the weighted rows before the update. ``nll(params,
    blocks, key) -> (B,)`` replaces :func:`block_nll` of :func:`training_apply`'s ``apply``
    (benchmarks time loss variants).

    On a CPU a large enough batch is computed in chunks (:func:`train_chunk_rows`), the
    same loss and gradient up to rounding; with dropout, chunk c draws its masks from
    ``fold_in(key, first row of c)``, so they differ from one pass's (both are dropout).
    """
    if nll is None:
        train_apply = training_apply(apply)

        def nll(params, blocks, key):
            return block_nll(train_apply, params, blocks, deterministic=not dropout,
                             dropout_key=key if dropout else None)

    def value_and_grad(params, blocks, weights, key):
        tokens = jnp.maximum(jnp.sum(weights), 1.0) * (blocks.shape[1] - 1)
        chunk = train_chunk_rows(blocks.shape[0])

        def loss(params, blocks, weights, rows):  # a sum over rows: the chunks add up
            chunk_key = key if chunk is None else jax.random.fold_in(key, rows[0])
            return jnp.sum(nll(params, blocks, chunk_key) * weights) / tokens

        # the two chunks' gradients are added again in each of AdamW's updates; writing the
        # sum once (_xla_cpu.fusion.materialize, as the VAE's 16 chunks need) was 3 % slower here
        rows = (blocks, weights, jnp.arange(blocks.shape[0]))
        return value_and_grad_in_lanes(loss, params, rows, chunk, lanes=CPU_TRAIN_CHUNKS)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, blocks, weights, key):
        value, grads = value_and_grad(params, blocks, weights, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


@functools.lru_cache(maxsize=8)
def _finetune_step(apply: Callable, config: FinetuneConfig, total_steps: int):
    # every generation of a study fine-tunes the same graph with the same schedule: one
    # compilation serves them all
    return make_train_step(apply, config.optimizer(total_steps), dropout=config.dropout)


@functools.lru_cache(maxsize=8)
def _scorer(apply: Callable):
    return jax.jit(lambda params, blocks: block_nll(apply, params, blocks))


def score_blocks(apply: Callable, params, blocks, *, batch_size: int = 64) -> np.ndarray:
    """Per-block summed NLL (nats) of ``blocks`` (N, L) under ``params``, in batches (the
    last one padded, so one compilation serves every call of a shape)."""
    blocks = _check_blocks("blocks", blocks)
    batch = min(batch_size, len(blocks))
    score = _scorer(apply)
    out = []
    for first in range(0, len(blocks), batch):
        chunk = blocks[first:first + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)]) if len(chunk) < batch else chunk
        out.append(np.asarray(score(params, jnp.asarray(padded)))[:len(chunk)])
    return np.concatenate(out)


def perplexity(apply: Callable, params, blocks, *, batch_size: int = 64) -> float:
    """Corpus perplexity: exp(total NLL / number of predicted tokens)."""
    blocks = _check_blocks("blocks", blocks)
    return float(np.exp(score_blocks(apply, params, blocks, batch_size=batch_size).sum()
                        / (blocks.shape[0] * (blocks.shape[1] - 1))))


def finetune(key, apply: Callable, params, train_blocks, valid_blocks, config: FinetuneConfig = FinetuneConfig(), *,
             on_step: Callable[[int, int, float], None] | None = None):
    """Fine-tune ``params`` on ``train_blocks`` (N, L); returns the kept parameters (the
    best epoch by validation loss when ``config.keep_best``, else the last) and a history
    dict (``train_loss`` and ``valid_loss`` per epoch, ``best_epoch`` (1-based), ``seconds``,
    ``tokens_per_second``). ``on_step(step, total_steps, loss)`` follows progress.

    Every epoch visits the blocks in a fresh random order (``fold_in(key, epoch)``); the
    last batch of an epoch is padded with zero-weight rows, so every step has one shape.
    """
    train_blocks = _check_blocks("train_blocks", train_blocks)
    valid_blocks = _check_blocks("valid_blocks", valid_blocks)
    rows = len(train_blocks)
    batch = min(config.batch_size, rows)
    steps_per_epoch = -(-rows // batch)
    total_steps = steps_per_epoch * config.epochs
    step = _finetune_step(apply, config, total_steps)
    params = jax.tree.map(jnp.array, params)  # a private copy: the step donates its buffers
    opt_state = config.optimizer(total_steps).init(params)
    best, best_loss, best_epoch = None, np.inf, 0
    history = {"train_loss": [], "valid_loss": []}
    started = time.perf_counter()
    done = 0
    for epoch in range(config.epochs):
        epoch_key = jax.random.fold_in(key, epoch)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), rows))
        order = np.concatenate([order, np.repeat(order[-1:], steps_per_epoch * batch - rows)])
        weights = (np.arange(steps_per_epoch * batch) < rows).astype(np.float32)
        total = 0.0
        for index in range(steps_per_epoch):
            picks = slice(index * batch, (index + 1) * batch)
            params, opt_state, loss = step(params, opt_state, jnp.asarray(train_blocks[order[picks]]),
                                           jnp.asarray(weights[picks]), jax.random.fold_in(epoch_key, index + 1))
            total += float(loss) * float(weights[picks].sum())
            done += 1
            if on_step is not None:
                on_step(done, total_steps, float(loss))
        history["train_loss"].append(total / rows)
        valid_loss = float(np.log(perplexity(apply, params, valid_blocks)))
        history["valid_loss"].append(valid_loss)
        if valid_loss < best_loss or not config.keep_best:
            best_loss, best_epoch = valid_loss, epoch + 1
            best = jax.tree.map(jnp.copy, params) if config.keep_best and epoch + 1 < config.epochs else params
    seconds = time.perf_counter() - started
    history.update(best_epoch=best_epoch, seconds=seconds,
                   tokens_per_second=rows * train_blocks.shape[1] * config.epochs / max(seconds, 1e-9))
    return best, history


def _check_blocks(name: str, blocks) -> np.ndarray:
    blocks = np.asarray(blocks)
    if blocks.ndim != 2 or blocks.shape[0] < 1 or blocks.shape[1] < 2:
        raise ConfigError(f"{name} must be a (blocks, block_size) array of token ids with at least one block of "
                          f"at least 2 tokens; got shape {blocks.shape}")
    if not np.issubdtype(blocks.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer token ids; got dtype {blocks.dtype}")
    return blocks.astype(np.int32)
