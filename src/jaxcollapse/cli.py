"""The ``jaxcollapse`` command line: flags map one to one onto GaussianStudy and
RunSettings, which are saved with every run (see docs/cli.md)."""

from __future__ import annotations

import argparse
import sys

from ._validation import ConfigError
from .heap import run_cpu_programs_inline

__all__ = ["main", "build_parser"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; got {text!r}") from error


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from error


def _add_chain_arguments(command, chains: int = 10_000, generations: int = 200, samples: int = 100) -> None:
    """Flags every chain study shares: sizes, schedule and regime."""
    command.add_argument("--chains", type=int, default=chains, help=f"independent chains (default {chains})")
    command.add_argument("--generations", type=int, default=generations, help=f"fitted generations G (default {generations})")
    command.add_argument("--samples", type=int, default=samples, help=f"M, or M_0 of a growing schedule (default {samples})")
    command.add_argument("--schedule", default="constant",
                         help="constant | linear:SLOPE | power:P | geometric:RATIO | list:M0,M1,...")
    command.add_argument("--regime", default="replace",
                         help="replace | accumulate | accumulate-subsample | real-fraction:F | fresh-real:F | mix:A,B,G")


def _add_run_arguments(command, out: str) -> None:
    """Flags of how a study is run and where it is written."""
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--out", default=out, help=f"run folder (default {out})")
    command.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    command.add_argument("--check", action="store_true", help="print Monte Carlo against every formula")
    command.add_argument("--chunk-size", type=int, default=None, help="chains in flight (default: memory budget)")
    command.add_argument("--devices", type=int, default=None,
                         help="devices to shard chains over (0: all; default 1, or all with --distributed)")
    command.add_argument("--no-figures", action="store_true")
    command.add_argument("--x64", action="store_true", help="compute in float64")
    command.add_argument("--progress", dest="progress", action="store_true", default=None)
    command.add_argument("--no-progress", dest="progress", action="store_false")
    command.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                         help="save the run's state to OUT/checkpoint.npz every K generations (default: every "
                              "~10%% of the run); a killed run resumes with `jaxcollapse resume OUT`")
    several = command.add_argument_group(
        "several processes", "one run over the devices of several processes (a GPU cluster, a TPU pod): start the "
        "same command in every process; process 0 writes OUT, which must be on a shared file system")
    several.add_argument("--distributed", action="store_true",
                         help="join the processes that SLURM, Open MPI or a TPU pod started (detected)")
    several.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address, given explicitly")
    several.add_argument("--num-processes", type=int, default=None, help="processes in the run, given explicitly")
    several.add_argument("--process-id", type=int, default=None, help="this process's index, given explicitly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcollapse", description="Simulate model collapse with JAX.")
    commands = parser.add_subparsers(dest="command", required=True)

    gaussian = commands.add_parser("gaussian", help="Gaussian recursion chains (paper section 4.2)")
    _add_chain_arguments(gaussian)
    gaussian.add_argument("--estimator", default="unbiased", help="unbiased (ddof=1, paper eq. 1) | mle (ddof=0)")
    gaussian.add_argument("--dim", type=int, default=1, help="dimension d (default 1)")
    gaussian.add_argument("--mean", type=float, default=0.0, help="mean of p0 (every coordinate)")
    gaussian.add_argument("--sigma", type=float, default=1.0, help="standard deviation (scale) of p0")
    gaussian.add_argument("--p0", default="normal", help="normal | student-t:DF | laplace | mixture:SEPARATION")
    gaussian.add_argument("--path", default="auto", help="auto | data | sufficient (default auto)")
    _add_run_arguments(gaussian, "results/gaussian")
    gaussian.add_argument("--quantiles", type=_floats, default=(0.05, 0.5, 0.95), help="of the W2 risk")
    gaussian.add_argument("--figure-samples", type=_ints, default=(100, 500, 1000, 10_000),
                          help="M of the single-chain trajectory figure")

    discrete = commands.add_parser("discrete", help="discrete chains: histograms, Bernoulli, Poisson (paper section 4.1)")
    _add_chain_arguments(discrete)
    discrete.add_argument("--family", default="categorical", help="categorical | bernoulli | poisson")
    discrete.add_argument("--states", type=int, default=20, help="K, states of the histogram (default 20)")
    discrete.add_argument("--init", default="mixture",
                          help="uniform | zipf:S | mixture | fat-mixture | probs:P1,P2,... | bernoulli:P | poisson:LAMBDA")
    discrete.add_argument("--smoothing", type=float, default=0.0, help="additive smoothing alpha of the fit (default 0)")
    discrete.add_argument("--tail-threshold", type=float, default=None,
                          help="states with p0 below it form the tail (default 1/M)")
    discrete.add_argument("--path", default="auto", help="auto | data | counts (default auto)")
    discrete.add_argument("--per-state", dest="per_state", action="store_true", default=None,
                          help="record per-state means (default when K <= 64)")
    discrete.add_argument("--no-per-state", dest="per_state", action="store_false")
    _add_run_arguments(discrete, "results/discrete")

    gmm = commands.add_parser("gmm", help="Gaussian mixtures refitted by EM (paper section 5.1, Figures 7 and 13)")
    _add_chain_arguments(gmm, chains=200, generations=200, samples=1000)
    gmm.add_argument("--components", type=int, default=2, help="k, components of the fitted mixture (default 2)")
    gmm.add_argument("--covariance", default="full", help="full | diag | spherical (default full)")
    gmm.add_argument("--iterations", type=int, default=20, help="EM iterations per generation (default 20)")
    gmm.add_argument("--init", default="previous", help="previous (warm start) | kmeans++ | kmeans (default previous)")
    gmm.add_argument("--kmeans-iterations", type=int, default=10, help="Lloyd steps of the kmeans start (default 10)")
    gmm.add_argument("--reg-covar", type=float, default=1e-6, help="covariance floor added to every diagonal (default 1e-6)")
    gmm.add_argument("--p0", default="two-blobs", help="two-blobs | two-blobs:SEPARATION | blob (default two-blobs)")
    gmm.add_argument("--dim", type=int, default=2, help="dimension d (default 2)")
    gmm.add_argument("--heldout", type=int, default=1000, help="held-out real points for the log-likelihood (default 1000)")
    gmm.add_argument("--weight-threshold", type=float, default=0.01, help="a component lighter than this has collapsed")
    gmm.add_argument("--variance-threshold", type=float, default=1e-3,
                     help="a component with det(cov)^(1/d) below this has collapsed")
    _add_run_arguments(gmm, "results/gmm")
    gmm.add_argument("--quantiles", type=_floats, default=(0.05, 0.5, 0.95), help="of the L2 distance")
    gmm.add_argument("--figure-samples", type=_ints, default=None,
                     help="extra M of Figure 13, 64 chains each (default 100,300)")

    kde = commands.add_parser("kde", help="Gaussian kernel density estimators refitted on their own samples")
    _add_chain_arguments(kde, chains=1000, generations=100, samples=100)
    kde.add_argument("--bandwidth", default="0.1", help="h > 0 (kernel sd) | scott | silverman (default 0.1)")
    kde.add_argument("--dim", type=int, default=1, help="dimension d (default 1)")
    kde.add_argument("--mean", type=float, default=0.0, help="mean of p0 (every coordinate)")
    kde.add_argument("--sigma", type=float, default=1.0, help="standard deviation (scale) of p0")
    kde.add_argument("--p0", default="normal", help="normal | student-t:DF | laplace | mixture:SEPARATION")
    kde.add_argument("--heldout", type=int, default=256, help="held-out real points for the NLL (default 256)")
    _add_run_arguments(kde, "results/kde")

    regression = commands.add_parser(
        "regression", help="linear regression refitted on its own labels (Gerstgrasser et al. 2024)")
    regression.add_argument("--chains", type=int, default=10_000, help="independent chains (default 10000)")
    regression.add_argument("--generations", type=int, default=50, help="fitted generations G (default 50)")
    regression.add_argument("--samples", type=int, default=100, help="T, rows of the fixed design (default 100)")
    regression.add_argument("--dim", type=int, default=10, help="d, features (default 10)")
    regression.add_argument("--noise", type=float, default=1.0, help="sigma, label noise (default 1)")
    regression.add_argument("--regime", default="replace", help="replace | accumulate (default replace)")
    regression.add_argument("--design", default="per-chain",
                            help="per-chain (a Gaussian design per chain) | shared (one for all chains)")
    regression.add_argument("--design-seed", type=int, default=0, help="seed of the shared design (default 0)")
    regression.add_argument("--design-file", default=None,
                            help="CSV of a shared design, T rows of d numbers (overrides --design and --samples)")
    regression.add_argument("--path", default="auto", help="auto | data | sufficient (default auto)")
    _add_run_arguments(regression, "results/regression")

    lm = commands.add_parser(
        "lm", help="an OPT language model fine-tuned on its own text (paper section 5.2, Figures 10, 11, 14, 15)")
    lm.add_argument("--model", default="tiny", help="tiny | small (random OPT presets) | DIR (a local Hugging Face "
                    "OPT checkpoint: config.json, model.safetensors, tokenizer files)")
    lm.add_argument("--corpus", default="synthetic", help="synthetic (built-in Markov language, exact likelihoods) | "
                    "wikitext2 (cached or reachable) | PATH (a text file or a folder of them)")
    lm.add_argument("--preset", default=None, help="paper-no-real | paper-10pct-real: the paper's settings for "
                    "OPT-125m on wikitext-2 (use with --model DIR, on a GPU); other flags given override them")
    lm.add_argument("--generations", type=int, default=None, help="models trained, generation 0 on real data "
                    "(default 3)")
    lm.add_argument("--runs", type=int, default=None, help="independent runs (default 1)")
    lm.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per generation (default 5)")
    lm.add_argument("--real-fraction", type=float, default=None,
                    help="share of each later generation's blocks replaced by random real blocks (default 0)")
    lm.add_argument("--beams", type=int, default=None, help="beam search width; 1 = greedy (default 5)")
    lm.add_argument("--repetition-penalty", type=float, default=None, help="Hugging Face's (default 1: none)")
    lm.add_argument("--decoding", default=None, help="beam (the paper's, --beams wide) | greedy | sample "
                    "(ancestral sampling at --temperature) (default beam)")
    lm.add_argument("--temperature", type=float, default=None, help="for --decoding sample (default 1)")
    lm.add_argument("--block-size", type=int, default=None, help="tokens per block (default 64)")
    lm.add_argument("--new-tokens", type=int, default=None, help="tokens written per prompt (default 64)")
    lm.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch (default 32)")
    lm.add_argument("--lr", type=float, default=None,
                    help="AdamW learning rate, cosine schedule (default 1e-3 for presets, 2e-5 for a checkpoint)")
    lm.add_argument("--train-blocks", type=int, default=None,
                    help="cap on real training blocks (default 512; 0 = all)")
    lm.add_argument("--eval-blocks", type=int, default=None,
                    help="cap on validation and test blocks (default 64; 0 = all)")
    lm.add_argument("--vocab", type=int, default=None,
                    help="symbols of the synthetic language, or BPE vocabulary for a preset model (default 16)")
    lm.add_argument("--generation-batch", type=int, default=None, help="prompts per generation call (default 16)")
    lm.add_argument("--seed", type=int, default=None)
    lm.add_argument("--out", default="results/lm", help="run folder; an existing one of the same run resumes")
    lm.add_argument("--force", action="store_true", help="start over in --out")
    lm.add_argument("--no-figures", action="store_true")
    lm.add_argument("--no-progress", action="store_true")

    vae = commands.add_parser("vae", help="VAEs retrained on their own samples (paper section 5.1, Figures 8 and 9)")
    vae.add_argument("--generations", type=int, default=5, help="generations trained on generated data (default 5)")
    vae.add_argument("--runs", type=int, default=5, help="independent runs, trained at once with vmap (default 5)")
    vae.add_argument("--dataset", default="mnist5k", help="mnist5k (offline, 5000 real digits) | mnist | digits (8x8)")
    vae.add_argument("--epochs", type=int, default=30, help="epochs per generation (default 30)")
    vae.add_argument("--batch-size", type=int, default=256, help="minibatch (default 256)")
    vae.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    vae.add_argument("--weight-decay", type=float, default=1e-5, help="L2 weight decay (default 1e-5)")
    vae.add_argument("--architecture", default=None, help="conv (the paper's) | mlp (default: conv, mlp for digits)")
    vae.add_argument("--latent", type=int, default=None, help="latent size (default 20; 4 for digits)")
    vae.add_argument("--sample-mode", default="mean", help="mean (decoder means, the authors') | bernoulli")
    vae.add_argument("--regime", default="replace", help="replace | real-fraction:F | accumulate")
    vae.add_argument("--heldout", type=int, default=500, help="real images held out of training (default 500)")
    vae.add_argument("--seed", type=int, default=0)
    vae.add_argument("--out", default="results/vae", help="run folder; an existing one of the same run resumes")
    vae.add_argument("--force", action="store_true", help="start over in --out")
    vae.add_argument("--no-figures", action="store_true")
    vae.add_argument("--no-progress", action="store_true")

    rerun = commands.add_parser("rerun", help="repeat a run from its config.json and compare")
    rerun.add_argument("folder")
    rerun.add_argument("--out", default=None, help="where to write (default FOLDER-rerun)")
    rerun.add_argument("--force", action="store_true")
    rerun.add_argument("--no-figures", action="store_true")
    sweep = commands.add_parser("sweep", help="a grid or list of runs from a TOML file (see docs/sweeps.md)")
    sweep.add_argument("config", help="the sweep's TOML file")
    sweep.add_argument("--out", default="results/sweep", help="sweep folder (default results/sweep)")
    sweep.add_argument("--force", action="store_true", help="start the whole sweep over")
    sweep.add_argument("--no-figures", action="store_true")
    reproduce = commands.add_parser("reproduce", help="every figure of the paper the families support, and a report")
    reproduce.add_argument("--out", default="results/reproduce", help="folder (default results/reproduce)")
    reproduce.add_argument("--scale", default="quick", help="quick (a laptop CPU, minutes) | paper (the paper's sizes)")
    reproduce.add_argument("--opt-checkpoint", default=None,
                           help="a local facebook/opt-125m folder, for the language-model section at --scale paper")
    reproduce.add_argument("--only", default="", help="comma-separated section name prefixes, e.g. figure3,figure4")
    resume = commands.add_parser("resume", help="finish an interrupted run (or sweep) from its folder")
    resume.add_argument("folder")
    resume.add_argument("--no-figures", action="store_true")
    return parser


def _join_processes(args) -> int | None:
    """Start the multi-process runtime if asked (before anything initialises JAX's
    backends) and return the ``devices`` setting: all devices under several processes."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    several = args.distributed or any(value is not None for value in explicit)
    if args.devices is not None and args.devices < 0:
        raise ConfigError(f"devices must be >= 0 (0: all devices); got {args.devices}")
    if not several:
        return None if args.devices == 0 else (args.devices or 1)
    if not args.distributed and any(value is None for value in explicit):
        raise ConfigError("give --coordinator, --num-processes and --process-id together, or --distributed to "
                          "detect them from the cluster's environment")
    if args.num_processes is not None and args.num_processes < 1:
        raise ConfigError(f"num-processes must be >= 1; got {args.num_processes}")
    if args.process_id is not None and not 0 <= args.process_id < (args.num_processes or args.process_id + 1):
        raise ConfigError(f"process-id must be in [0, num-processes = {args.num_processes}); got {args.process_id}")
    if args.devices not in (None, 0):
        raise ConfigError(f"a run over several processes shards chains over every device of every process; "
                          f"devices must be 0 (all) or left out; got {args.devices}")
    from .distributed import initialize

    initialize(*explicit)
    return None


def _print_outputs(paths, rows, check: bool) -> None:
    """What a chain run wrote (process 0 of a multi-process run; the others write nothing)."""
    if "summary" not in paths:
        return
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {paths['summary'].parent}")
    if check:
        from .check import format_check

        print(format_check(rows))


def _gaussian(args) -> int:
    from .initial import parse_initial
    from .runs import RunSettings, run_gaussian
    from .study import gaussian_study

    study = gaussian_study(
        samples=args.samples, generations=args.generations, schedule=args.schedule, regime=args.regime,
        estimator=args.estimator, initial=parse_initial(args.p0, args.mean, args.sigma, args.dim), path=args.path,
    )
    settings = RunSettings(
        chains=args.chains, seed=args.seed, chunk_size=args.chunk_size, devices=args.devices,
        quantiles=args.quantiles, figure_samples=args.figure_samples, progress=args.progress,
        checkpoint_every=args.checkpoint_every,
    )
    paths, rows = run_gaussian(study, settings, args.out, force=args.force, figures=not args.no_figures)
    _print_outputs(paths, rows, args.check)
    return 0


def _discrete(args) -> int:
    from .discrete import discrete_study
    from .runs import RunSettings, run_discrete

    init = args.init
    if args.family != "categorical" and init == "mixture":
        init = {"bernoulli": "bernoulli:0.3", "poisson": "poisson:1"}.get(args.family, init)
    study = discrete_study(
        samples=args.samples, generations=args.generations, family=args.family, states=args.states, init=init,
        schedule=args.schedule, regime=args.regime, smoothing=args.smoothing, tail_threshold=args.tail_threshold,
        path=args.path, per_state=args.per_state,
    )
    settings = RunSettings(chains=args.chains, seed=args.seed, chunk_size=args.chunk_size,
                           devices=args.devices, progress=args.progress, checkpoint_every=args.checkpoint_every)
    paths, rows = run_discrete(study, settings, args.out, force=args.force, figures=not args.no_figures)
    _print_outputs(paths, rows, args.check)
    return 0


def _run(args, study, **settings) -> int:
    """Run a GMM, KDE or regression study from parsed flags and print what was written."""
    from .runs import RunSettings, run_study

    settings = RunSettings(chains=args.chains, seed=args.seed, chunk_size=args.chunk_size,
                           devices=args.devices, progress=args.progress,
                           checkpoint_every=args.checkpoint_every, **settings)
    paths, rows = run_study(study, settings, args.out, force=args.force, figures=not args.no_figures)
    _print_outputs(paths, rows, args.check)
    return 0


def _x64(args) -> None:
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)


def _gmm(args) -> int:
    from .gmm import gmm_study

    study = gmm_study(
        samples=args.samples, generations=args.generations, components=args.components,
        covariance_type=args.covariance, iterations=args.iterations, init=args.init,
        reg_covar=args.reg_covar, kmeans_iterations=args.kmeans_iterations, p0=args.p0, dim=args.dim,
        schedule=args.schedule, regime=args.regime, heldout=args.heldout,
        weight_threshold=args.weight_threshold, variance_threshold=args.variance_threshold,
    )
    return _run(args, study, quantiles=args.quantiles, figure_samples=args.figure_samples)


def _kde(args) -> int:
    from .initial import parse_initial
    from .kde import kde_study

    study = kde_study(
        samples=args.samples, generations=args.generations, bandwidth=args.bandwidth, schedule=args.schedule,
        regime=args.regime, dim=args.dim, initial=parse_initial(args.p0, args.mean, args.sigma, args.dim),
        heldout=args.heldout,
    )
    return _run(args, study)


def _regression(args) -> int:
    from .regression import regression_study

    design = args.design
    samples, dim = args.samples, args.dim
    if args.design_file is not None:
        import numpy as np

        try:
            design = np.loadtxt(args.design_file, delimiter=",", ndmin=2)
        except (OSError, ValueError) as error:
            raise ConfigError(f"could not read --design-file {args.design_file!r} as CSV numbers: {error}") from error
        samples, dim = design.shape
    study = regression_study(
        samples=samples, dim=dim, generations=args.generations, noise=args.noise, regime=args.regime,
        design=design, design_seed=args.design_seed, path=args.path,
    )
    return _run(args, study)


def _vae(args) -> int:
    import dataclasses

    from .policies import parse_policy
    from .vae import TrainConfig
    from .vae_runs import VAEStudy, default_model, run_vae

    model = default_model(args.dataset) if args.dataset in ("digits", "mnist5k", "mnist") else None
    if model is not None:
        changes = {}
        if args.architecture is not None:
            changes["architecture"] = args.architecture
        if args.latent is not None:
            changes["latent"] = args.latent
        model = dataclasses.replace(model, **changes)
    study = VAEStudy(
        generations=args.generations, runs=args.runs, dataset=args.dataset, model=model,
        training=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                             weight_decay=args.weight_decay),
        sample_mode=args.sample_mode, policy=parse_policy(args.regime), heldout=args.heldout, seed=args.seed,
    )
    run_vae(study, args.out, force=args.force, figures=not args.no_figures, progress=not args.no_progress)
    print(f"wrote summary.csv, latents.npz, checkpoints/ and figures to {args.out}")
    return 0


def _lm(args) -> int:
    import numpy as np

    # an OPT-125m training step's 814 MB of temporaries from the kept main heap, not mmapped
    # afresh at every step: 10-17 % faster (jaxcollapse.heap)
    run_cpu_programs_inline()
    from .lm.runs import PRESETS, LMStudy, run_lm

    settings = {}
    if args.preset is not None:
        if args.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {tuple(PRESETS)}; got {args.preset!r}")
        settings.update(PRESETS[args.preset])
    flags = {"model": args.model, "corpus": args.corpus, "generations": args.generations, "runs": args.runs,
             "epochs": args.epochs, "real_fraction": args.real_fraction, "beams": args.beams,
             "repetition_penalty": args.repetition_penalty, "decoding": args.decoding,
             "temperature": args.temperature, "block_size": args.block_size,
             "new_tokens": args.new_tokens, "batch_size": args.batch_size, "learning_rate": args.lr,
             "train_blocks": args.train_blocks, "eval_blocks": args.eval_blocks, "vocab": args.vocab,
             "generation_batch": args.generation_batch, "seed": args.seed}
    given = {name: value for name, value in flags.items() if value is not None}
    if args.preset is not None and given.get("corpus") == "synthetic":
        given.pop("corpus")  # the preset's corpus unless one is named
    for cap in ("train_blocks", "eval_blocks"):
        if given.get(cap) == 0:
            given[cap] = None
    settings.update(given)
    if args.preset is not None and settings["model"] in ("tiny", "small"):
        raise ConfigError(f"--preset {args.preset} fine-tunes a pretrained OPT: pass --model DIR, a folder with "
                          f"facebook/opt-125m's config.json, model.safetensors, vocab.json and merges.txt")
    study = LMStudy(**settings)
    rows = run_lm(study, args.out, force=args.force, figures=not args.no_figures,
                  progress=False if args.no_progress else None)
    last = [row for row in rows if row["generation"] == study.generations - 1]
    print(f"generation {study.generations - 1}: test perplexity "
          f"{np.mean([row['test_perplexity'] for row in last]):.2f} (generation 0: "
          f"{np.mean([row['test_perplexity'] for row in rows if row['generation'] == 0]):.2f})")
    print(f"wrote summary.csv, runs/ (models, written blocks, metrics) and figures to {args.out}")
    return 0


def _rerun(args) -> int:
    from .runs import rerun

    out, identical = rerun(args.folder, args.out, force=args.force, figures=not args.no_figures)
    if identical:
        print(f"rerun written to {out}: summary.csv is identical to the original, bit for bit")
        return 0
    print(f"rerun written to {out}: summary.csv DIFFERS from the original", file=sys.stderr)
    return 1


def _sweep(args) -> int:
    from .sweep import run_sweep

    table = run_sweep(args.config, args.out, force=args.force, figures=not args.no_figures)
    print(f"wrote every cell under {table.parent / 'cells'} and the tidy table {table}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import reproduce

    only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    report = reproduce(args.out, scale=args.scale, opt_checkpoint=args.opt_checkpoint, only=only)
    print(f"wrote every section under {report.parent} and the report {report}")
    return 0


def _resume(args) -> int:
    from pathlib import Path

    from .runs import resume

    if (Path(args.folder) / "sweep.json").is_file():
        from .sweep import run_sweep

        table = run_sweep(Path(args.folder) / "sweep.toml", args.folder, figures=not args.no_figures)
        print(f"the sweep in {args.folder} is finished; tidy table {table}")
        return 0
    config = Path(args.folder) / "config.json"
    if not config.is_file():
        raise ConfigError(f"{args.folder} holds no config.json; it is not a jaxcollapse run folder")
    import json

    command = json.loads(config.read_text()).get("command")
    if command in ("vae", "lm"):
        raise ConfigError(f"{args.folder} is a {command} run: run the same `jaxcollapse {command} ... --out "
                          f"{args.folder}` command again; it resumes at the last finished generation")
    written = resume(args.folder, figures=not args.no_figures)
    if written is None:
        print(f"{args.folder} holds a finished run (summary.csv); nothing to resume")
    else:
        print(f"resumed and finished the run in {args.folder}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"gaussian": _gaussian, "discrete": _discrete, "gmm": _gmm, "kde": _kde, "regression": _regression, "vae": _vae,
                    "lm": _lm, "rerun": _rerun, "resume": _resume, "sweep": _sweep,
                    "reproduce": _reproduce}
        if hasattr(args, "distributed"):  # the chain commands: processes and precision before any JAX work
            args.devices = _join_processes(args)
            _x64(args)
        return commands[args.command](args)
    except ConfigError as error:
        print(f"jaxcollapse: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
