"""A family trained from Python: minibatch Adam with early stopping, on the host executor
(docs/own_family.md, section 7).

Rows are 2-D points (x1, x2); the model is x2 | x1 ~ N(f(x1), sigma^2) with x1 ~ N(m, s^2)
fitted in closed form and f a small Flax NNX MLP. Its training is the kind that cannot sit
inside a traced loop: a Python loop of jitted minibatch steps that holds out a tenth of the
data set and keeps the epoch with the best held-out loss (early stopping), as a language
model's fine-tuning does. ``fit_runs`` trains the runs one after another and
``sample_runs`` draws from each; ``jaxcollapse.programs.host_program`` builds the chain and
``jaxcollapse.simulate`` runs it on the host executor, with the engine's keys and data
policies, and with a checkpoint folder that a second call resumes from (this script runs
twice: the second call loads every stage and trains nothing).

Run: python examples/host_family.py [--runs 3] [--generations 3] [--samples 400] [--regime accumulate]
"""

import argparse
import math
import tempfile
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxcollapse as jc
from jaxcollapse.families import Family, float_row
from jaxcollapse.programs import host_program

NOISE = 0.3  # p_0: x1 ~ N(0, 1), x2 | x1 ~ N(1 + sin(2 x1), NOISE^2)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Curve(nnx.Module):
    """x1 -> f(x1): two tanh layers."""

    def __init__(self, hidden: int, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(1, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x1):
        return self.out(jnp.tanh(self.hidden2(jnp.tanh(self.hidden1(x1[:, None])))))[:, 0]


class CurveParams(NamedTuple):
    net: dict  # the MLP's parameters (nnx.to_pure_dict)
    loc: jax.Array  # (): m
    scale: jax.Array  # (): s
    noise: jax.Array  # (): sigma, the residuals' spread on the training rows
    best_epoch: jax.Array  # (): the epoch early stopping kept (1-based)


def curve_family(hidden=16, epochs=30, batch=64, learning_rate=0.01, seed=0) -> Family:
    graphdef, state = nnx.split(Curve(hidden, nnx.Rngs(seed)))
    start = nnx.to_pure_dict(state)
    optimizer = optax.adam(learning_rate)

    def curve(net, x1):
        return nnx.merge(graphdef, net)(x1)

    def loss(net, points):
        return jnp.mean((points[:, 1] - curve(net, points[:, 0])) ** 2)

    @jax.jit
    def step(net, opt_state, points):
        value, grads = jax.value_and_grad(loss)(net, points)
        updates, opt_state = optimizer.update(grads, opt_state, net)
        return optax.apply_updates(net, updates), opt_state, value

    held_loss = jax.jit(loss)

    def train_one(key, points):
        """Host loop: shuffled minibatches, a held-out tenth, the best epoch kept."""
        order = np.asarray(jax.random.permutation(key, len(points)))
        held, train = points[order[: len(points) // 10]], points[order[len(points) // 10:]]
        net, opt_state = start, optimizer.init(start)
        best, best_loss, best_epoch = net, np.inf, 0
        for epoch in range(epochs):
            shuffled = train[np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), len(train)))]
            for first in range(0, len(shuffled) - batch + 1, batch):  # whole batches: one compiled shape
                net, opt_state, _ = step(net, opt_state, shuffled[first:first + batch])
            value = float(held_loss(net, held))
            if value < best_loss:
                best, best_loss, best_epoch = net, value, epoch + 1
        x1 = points[:, 0]
        residual = points[:, 1] - curve(best, x1)
        return CurveParams(best, jnp.mean(x1), jnp.std(x1), jnp.std(residual), jnp.int32(best_epoch))

    def fit_runs(keys, data, weights, previous):
        del previous  # every generation trains from the same start
        runs = [train_one(keys[r], jnp.asarray(np.asarray(data[r])[np.asarray(weights[r]) > 0]))
                for r in range(len(keys))]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)

    def sample(key, params, n):
        x_key, noise_key = jax.random.split(key)
        x1 = params.loc + params.scale * jax.random.normal(x_key, (n,))
        x2 = curve(params.net, x1) + params.noise * jax.random.normal(noise_key, (n,))
        return jnp.stack([x1, x2], axis=1)

    def metrics(params, reference):  # held-out mean -log density of p_0's points
        x1, x2 = reference[:, 0], reference[:, 1]
        nll = (0.5 * ((x1 - params.loc) / params.scale) ** 2 + jnp.log(params.scale)
               + 0.5 * ((x2 - curve(params.net, x1)) / params.noise) ** 2 + jnp.log(params.noise) + 2 * _HALF_LOG_2PI)
        return {"heldout_nll": jnp.mean(nll)}

    params_shape = CurveParams(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), start),
                               *(jax.ShapeDtypeStruct((), jnp.float32),) * 3, jax.ShapeDtypeStruct((), jnp.int32))
    # fit is left out: the training loop is Python; sample is traceable and vmapped
    return Family(name="curve", row=float_row(2), metrics=metrics, fit_runs=fit_runs, sample=sample), params_shape


def sample_p0(key, n):
    x_key, noise_key = jax.random.split(key)
    x1 = jax.random.normal(x_key, (n,))
    return jnp.stack([x1, 1.0 + jnp.sin(2.0 * x1) + NOISE * jax.random.normal(noise_key, (n,))], axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--regime", default="accumulate")
    args = parser.parse_args(argv)
    family, params_shape = curve_family()
    heldout = sample_p0(jax.random.key(1234), 2000)
    score = jax.jit(jax.vmap(lambda params: family.metrics(params, heldout)["heldout_nll"]))

    def metrics(generation):  # generation 0 is p_0's own data: no model of its own
        if generation.params is None:
            return {"heldout_nll": np.full(len(generation.chains), np.nan),
                    "best_epoch": np.full(len(generation.chains), np.nan)}
        return {"heldout_nll": np.asarray(score(generation.params)),
                "best_epoch": np.asarray(generation.params.best_epoch, np.float64)}

    program = host_program(family, jc.parse_policy(args.regime), np.full(args.generations, args.samples), sample_p0,
                           metrics=metrics, metric_names=("heldout_nll", "best_epoch"), params_shape=params_shape)
    folder = tempfile.mkdtemp(prefix="host_family_")
    results = []
    for attempt in ("run", "resume"):  # the second call finds every stage in the folder
        started = time.perf_counter()
        results.append(jc.simulate(program, num_chains=args.runs, seed=0, record="trajectories",
                                   checkpoint=folder, identity={"regime": args.regime}))
        print(f"{attempt}: {time.perf_counter() - started:.1f} s")
    first, again = results
    assert np.array_equal(first.trajectories["heldout_nll"], again.trajectories["heldout_nll"], equal_nan=True)
    nll = first.summary("heldout_nll")
    for generation in range(1, args.generations + 1):
        print(f"generation {generation}: held-out NLL {nll['mean'][generation]:.3f} +- {nll['se'][generation]:.3f}, "
              f"best epoch {np.mean(first.trajectories['best_epoch'][generation]):.1f}")
    return first


if __name__ == "__main__":
    main()
