"""A neural family: a small Flax NNX density model trained by optax inside ``fit``
(docs/own_family.md).

Rows are 2-D points (x1, x2). The model is x1 ~ N(m, s^2), fitted in closed form, and
x2 | x1 ~ N(f(x1), g(x1)^2), where one tiny MLP gives f and log g and is trained by
full-batch Adam on the weighted negative log-likelihood, a few hundred steps in one
``lax.scan``. The network is split once (``nnx.split``): the parameters are a pure pytree
of arrays, so ``fit`` and ``sample`` are pure functions that the engine vmaps over chains
and scans over generations like any other family's. Generation 1 trains from one fixed
initialisation; later generations start from their predecessor (``Family.refit``), as
the paper's language models are fine-tuned from the previous generation.

p_0 is not a member of the family: generation 0's parameters carry ``is_p0`` and its
metrics are p_0's own, computed on the host (the pattern of the KDE family).

Run: python examples/nnx_family.py [--chains 32] [--generations 3] [--samples 200]
"""

import argparse
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxcollapse as jc
from jaxcollapse.families import Family, float_row
from jaxcollapse.programs import data_path_program

NOISE = 0.3  # p_0: x1 ~ N(0, 1), x2 | x1 ~ N(OFFSET + sin(2 x1), NOISE^2)
OFFSET = 1.0  # E[x2] under p_0; an untrained network's mean is near 0
HELDOUT_SEED = 1234
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------- the network

class Conditional(nnx.Module):
    """x1 -> (mean, log standard deviation) of x2: two tanh layers."""

    def __init__(self, hidden: int, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(1, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 2, rngs=rngs)

    def __call__(self, x1):
        h = jnp.tanh(self.hidden1(x1[:, None]))
        h = jnp.tanh(self.hidden2(h))
        mean, log_sd = self.out(h).T
        return mean, log_sd


class DensityParams(NamedTuple):
    net: dict  # the MLP's parameters: a pure dict of arrays (nnx.to_pure_dict)
    loc: jax.Array  # (): m, the mean of x1
    scale: jax.Array  # (): s, the standard deviation of x1
    losses: jax.Array  # (2,): the training loss before and after fit's steps
    is_p0: jax.Array  # () bool: generation 0, p_0 itself


class Reference(NamedTuple):
    """p_0 in the forms the metrics need, built once on the host."""

    heldout: jax.Array  # (T, 2): a fixed sample of p_0
    heldout_nll: jax.Array  # (): p_0's own mean -log density over it
    nodes: jax.Array  # (Q,): Gauss-Hermite nodes for E over x1 ~ N(m, s^2)
    node_weights: jax.Array  # (Q,): their weights, summing to 1


def gaussian_nll(x, mean, log_sd):
    return 0.5 * ((x - mean) * jnp.exp(-log_sd)) ** 2 + log_sd + _HALF_LOG_2PI


# ---------------------------------------------------------------- the family

def density_family(hidden=16, steps=300, learning_rate=0.02, seed=0):
    """The family and generation 1's starting network. The module is built and split once,
    here: inside ``fit`` the parameters are a plain pytree that optax updates and
    ``nnx.merge`` turns back into a module for one call (no Python state crosses jit)."""
    if steps < 1:
        raise jc.ConfigError(f"steps must be >= 1 (fit reports the loss before and after them); got {steps}")
    graphdef, state = nnx.split(Conditional(hidden, nnx.Rngs(seed)))
    start = nnx.to_pure_dict(state)
    optimizer = optax.adam(learning_rate)

    def conditional(net, x1):
        return nnx.merge(graphdef, net)(x1)

    def log_density(params, points):
        x1, x2 = points[:, 0], points[:, 1]
        mean, log_sd = conditional(params.net, x1)
        return -gaussian_nll(x1, params.loc, jnp.log(params.scale)) - gaussian_nll(x2, mean, log_sd)

    def train(net, data, weights):
        """Full-batch Adam on the weighted conditional NLL, a few hundred steps in one
        ``lax.scan``; returns the net and the loss before and after."""
        total = jnp.sum(weights)

        def loss(net):
            mean, log_sd = conditional(net, data[:, 0])
            return jnp.sum(weights * gaussian_nll(data[:, 1], mean, log_sd)) / total

        def step(carry, _):
            net, opt_state = carry
            value, grads = jax.value_and_grad(loss)(net)
            updates, opt_state = optimizer.update(grads, opt_state, net)
            return (optax.apply_updates(net, updates), opt_state), value

        (net, _), trace = jax.lax.scan(step, (net, optimizer.init(net)), length=steps)
        return net, jnp.stack([trace[0], loss(net)])

    def fit_from(net, data, weights):
        # a weight-0 row is a padded slot and may hold anything: read it as 0, or one
        # inf there would make 0 * inf = NaN of the loss and of its gradient
        data = jnp.where(weights[:, None] > 0, data, 0.0)
        # x1's Gaussian in closed form (weighted mean and MLE variance); x2 | x1 by training
        x1, total = data[:, 0], jnp.sum(weights)
        loc = jnp.sum(weights * x1) / total
        scale = jnp.sqrt(jnp.sum(weights * (x1 - loc) ** 2) / total)
        net, losses = train(net, data, weights)
        return DensityParams(net, loc, scale, losses, jnp.asarray(False))

    def fit(key, data, weights):
        del key  # full-batch training from a fixed start is deterministic
        return fit_from(start, data, weights)

    def refit(key, data, weights, previous):
        del key
        return fit_from(previous.net, data, weights)

    def sample(key, params, n):
        x1_key, x2_key = jax.random.split(key)
        x1 = params.loc + params.scale * jax.random.normal(x1_key, (n,))
        mean, log_sd = conditional(params.net, x1)
        x2 = mean + jnp.exp(log_sd) * jax.random.normal(x2_key, (n,))
        return jnp.stack([x1, x2], axis=1)

    def metrics(params, reference):
        """heldout_nll: mean -log density of a fixed p_0 sample; noise_sd: the model's
        g(x1) averaged over it; x2_mean: E[x2] under the model (Gauss-Hermite over x1)."""
        heldout_x1 = reference.heldout[:, 0]
        _, log_sd = conditional(params.net, heldout_x1)
        mean_at_nodes, _ = conditional(params.net, params.loc + params.scale * reference.nodes)
        model = {
            "heldout_nll": -jnp.mean(log_density(params, reference.heldout)),
            "noise_sd": jnp.mean(jnp.exp(log_sd)),
            "x2_mean": jnp.sum(reference.node_weights * mean_at_nodes),
            "x1_scale": params.scale,
            "fit_gain": params.losses[0] - params.losses[1],
        }
        p0 = {"heldout_nll": reference.heldout_nll, "noise_sd": NOISE, "x2_mean": OFFSET, "x1_scale": 1.0,
              "fit_gain": 0.0}
        return {name: jnp.where(params.is_p0, p0[name], value) for name, value in model.items()}

    family = Family(name="nnx-density", row=float_row(2), fit=fit, sample=sample, metrics=metrics, refit=refit)
    p0_params = DensityParams(start, jnp.asarray(0.0), jnp.asarray(1.0), jnp.zeros(2), jnp.asarray(True))
    return family, p0_params


METRIC_NAMES = ("heldout_nll", "noise_sd", "x2_mean", "x1_scale", "fit_gain")


def sample_p0(key, n):
    x1_key, x2_key = jax.random.split(key)
    x1 = jax.random.normal(x1_key, (n,))
    return jnp.stack([x1, OFFSET + jnp.sin(2.0 * x1) + NOISE * jax.random.normal(x2_key, (n,))], axis=1)


def p0_reference(points=512, nodes=20):
    """A held-out sample of p_0 (its own generator: host numpy under a fixed seed), p_0's
    exact mean -log density over it and probabilists' Gauss-Hermite quadrature."""
    rng = np.random.default_rng(HELDOUT_SEED)
    x1 = rng.standard_normal(points)
    x2 = OFFSET + np.sin(2.0 * x1) + NOISE * rng.standard_normal(points)
    nll = 0.5 * x1**2 + 0.5 * ((x2 - OFFSET - np.sin(2.0 * x1)) / NOISE) ** 2 + np.log(NOISE) + 2 * _HALF_LOG_2PI
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    dtype = jnp.result_type(float)
    return Reference(jnp.asarray(np.stack([x1, x2], axis=1), dtype), jnp.asarray(nll.mean(), dtype),
                     jnp.asarray(t, dtype), jnp.asarray(w / w.sum(), dtype))


def density_program(generations, samples, regime="replace", **family_options):
    family, p0_params = density_family(**family_options)
    reference = p0_reference()
    return data_path_program(
        family, jc.parse_policy(regime), np.full(generations, samples), sample_p0, p0_params,
        metrics=lambda params: family.metrics(params, reference), metric_names=METRIC_NAMES,
    )


# ---------------------------------------------------------------- the script

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="M, every generation")
    parser.add_argument("--regime", default="replace")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per fit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    program = density_program(args.generations, args.samples, args.regime, steps=args.steps)
    result = jc.simulate(program, num_chains=args.chains, seed=args.seed)
    summaries = {name: result.summary(name) for name in METRIC_NAMES}
    print(f"NNX density model, M = {args.samples}, {args.regime}, {args.chains} chains, {args.steps} Adam steps per fit")
    print(f"{'gen':>4}" + "".join(f" {name:>12} {'se':>7}" for name in METRIC_NAMES))
    for n in range(args.generations + 1):
        print(f"{n:>4}" + "".join(f" {s['mean'][n]:12.4f} {s['se'][n]:7.4f}" for s in summaries.values()))
    print(f"compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s")
    return summaries


if __name__ == "__main__":
    main()
