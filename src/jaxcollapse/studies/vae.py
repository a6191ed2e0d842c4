"""The ``vae`` study command: VAEs retrained on their own samples (paper section 5.1,
Figures 8 and 9). The VAE modules load on first use (flax and optax are not needed to
list the commands).

Examples:
    >>> study, settings = COMMAND.build(COMMAND.values({"dataset": "digits", "generations": 1, "epochs": 1}))
    >>> study.model.architecture, settings.progress
    ('mlp', True)
"""

from __future__ import annotations

from .base import (
    HostSettings, Option, RunOutcome, StudyCommand, host_run_options, host_settings_from_config, write_host_report,
)

__all__ = ["COMMAND"]

REPORT_COLUMNS = ["generation", "samples", "heldout_nelbo_mean", "heldout_nelbo_se", "latent_sd_mean", "latent_sd_se",
                  "class_entropy_mean", "class_entropy_se", "train_loss_mean"]


def _build(values: dict):
    import dataclasses

    from ..policies import parse_policy
    from ..vae import TrainConfig
    from ..vae_runs import VAEStudy, default_model

    model = default_model(values["dataset"]) if values["dataset"] in ("digits", "mnist5k", "mnist") else None
    if model is not None:
        changes = {name: values[name] for name in ("architecture", "latent") if values[name] is not None}
        model = dataclasses.replace(model, **changes)
    study = VAEStudy(
        generations=values["generations"], runs=values["runs"], dataset=values["dataset"], model=model,
        training=TrainConfig(epochs=values["epochs"], batch_size=values["batch_size"], learning_rate=values["lr"],
                             weight_decay=values["weight_decay"]),
        sample_mode=values["sample_mode"], policy=parse_policy(values["regime"]), heldout=values["heldout"],
        seed=values["seed"],
    )
    return study, HostSettings(progress=not values["no_progress"])


def _from_json(blob: dict):
    from ..vae_runs import VAEStudy

    return VAEStudy.from_json(blob)


def _run(study, settings: HostSettings, folder, *, force: bool = False, figures: bool = True) -> RunOutcome:
    from ..vae_runs import run_vae

    rows = run_vae(study, folder, force=force, figures=figures, progress=bool(settings.progress))
    report = write_host_report(folder, "jaxcollapse VAE study", study, rows, REPORT_COLUMNS)
    return RunOutcome({"report": report}, [], (
        f"wrote summary.csv, report.md, latents.npz, checkpoints/ and figures to {folder}",))


COMMAND = StudyCommand(
    name="vae",
    help="VAEs retrained on their own samples (paper section 5.1, Figures 8 and 9)",
    options=(
        Option("generations", 5, "fitted generations G, as for every command: generation 1 is trained on the real "
               "data, each later one on the data its predecessor generated (default 5)", int),
        Option("runs", 5, "independent runs, trained at once with vmap (default 5)", int),
        Option("dataset", "mnist5k", "mnist5k (offline, 5000 real digits) | mnist | digits (8x8)"),
        Option("epochs", 30, "epochs per generation (default 30)", int),
        Option("batch_size", 256, "minibatch (default 256)", int),
        Option("lr", 1e-3, "Adam learning rate (default 1e-3)", float),
        Option("weight_decay", 1e-5, "L2 weight decay (default 1e-5)", float),
        Option("architecture", None, "conv (the paper's) | mlp (default: conv, mlp for digits)"),
        Option("latent", None, "latent size (default 20; 4 for digits)", int),
        Option("sample_mode", "mean", "mean (decoder means, the authors') | bernoulli"),
        Option("regime", "replace", "replace | accumulate | accumulate-subsample | real-fraction:F | fresh-real:F | "
               "mix:A,B,G (every data policy; fresh real images are drawn from the real set)"),
        Option("heldout", 500, "real images held out of training (default 500)", int),
        Option("seed", 0, "", int),
    ) + host_run_options("results/vae"),
    build=_build,
    from_json=_from_json,
    settings_from_config=host_settings_from_config,
    run=_run,
    chains=False,
    rank=6,
)
