"""Run folders: ``config.json``, ``summary.csv``, ``check.csv``, figures and a report.

``config.json`` holds everything needed to repeat a run bit for bit
(:func:`rerun`). A folder whose ``summary.csv`` exists holds a finished run and
is never overwritten unless ``force`` is set. Files are written atomically.

Example:
    >>> import tempfile, jaxcollapse as jc
    >>> study = jc.gaussian_study(samples=50, generations=3)
    >>> folder = tempfile.mkdtemp() + "/run"
    >>> paths, rows = run_gaussian(study, RunSettings(chains=100), folder, figures=False)
    >>> sorted(p.name for p in paths.values())
    ['check.csv', 'config.json', 'report.md', 'summary.csv']
"""

from __future__ import annotations

import csv
import io
import json
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from ._files import atomic_text
from ._validation import ConfigError, require_fraction, require_int
from .check import absorption_time_rows, format_check, theory_curves, theory_table, verdicts
from .discrete import DiscreteStudy
from .distributed import is_main_process
from .engine import SimulationResult, simulate
from .families.gaussian import minimum_samples
from .gmm import GMMStudy
from .kde import KDEStudy
from .regression import RegressionStudy
from .study import GaussianStudy

__all__ = [
    "RunSettings", "run_gaussian", "summary_rows", "load_config", "run_discrete",
    "discrete_summary_rows", "rerun", "resume", "run_study", "study_summary_rows",
]

FORMAT_VERSION = 1
GAUSSIAN_FIGURE_SAMPLES = (100, 500, 1000, 10_000)  # M of the single-chain trajectory figure
REQUIRED_COLUMNS = (
    "generation", "samples", "w2_risk_mean", "w2_risk_se", "w2_risk_exact", "w2_risk_paper",
    "w2_risk_lower_bound", "var_x_mean", "var_x_se", "var_x_exact", "sigma2_mean", "sigma2_se", "sigma2_exact",
)


@dataclass(frozen=True)
class RunSettings:
    """How a study is run: these do not change any chain's numbers except ``seed``."""

    chains: int = 10_000
    seed: int = 0
    chunk_size: int | None = None
    devices: int | None = 1
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    figure_samples: tuple[int, ...] | None = None  # None: the run kind's own (figure_sizes)
    progress: bool | None = None
    checkpoint_every: int | None = None  # generations between checkpoints (None: every segment, ~10 % of G, >= 10)

    def __post_init__(self):
        require_int("chains", self.chains, 1)
        if not 0 <= require_int("seed", self.seed, 0) < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32); got {self.seed}")
        if self.chunk_size is not None:
            require_int("chunk_size", self.chunk_size, 1)
        if self.devices is not None:
            require_int("devices", self.devices, 1)
        for q in self.quantiles:
            require_fraction("quantile", q)
        for m in self.figure_samples or ():
            require_int("figure sample size", m, 1)
        if self.checkpoint_every is not None:
            require_int("checkpoint_every", self.checkpoint_every, 1)

    def figure_sizes(self, default: tuple[int, ...]) -> tuple[int, ...]:
        """The sample sizes of the extra figure runs: the chosen ones, else ``default``
        (each run kind has its own: a 64-chain EM run at M = 10^4 is not a default)."""
        return default if self.figure_samples is None else tuple(self.figure_samples)


def _number(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _generation_columns(study, result: SimulationResult) -> dict[str, np.ndarray | list]:
    """The first two columns of every summary.csv: the generation and the M it was fitted with."""
    return {
        "generation": np.arange(result.num_generations + 1),
        "samples": [None] + [int(m) for m in study.sizes],
    }


def _table(columns: dict, generations: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows of text, one row per generation 0..G."""
    header = list(columns)
    return header, [[_number(columns[name][g]) for name in header] for g in range(generations + 1)]


def summary_rows(study: GaussianStudy, result: SimulationResult, quantiles=()) -> tuple[list[str], list[list[str]]]:
    """The per-generation table of summary.csv: header and rows of text."""
    generations = result.num_generations
    columns = _generation_columns(study, result)
    for metric in result.metric_names:
        summary = result.summary(metric)
        columns[f"{metric}_mean"] = summary["mean"]
        columns[f"{metric}_se"] = summary["se"]
        if metric == "w2_risk":
            columns["w2_risk_var"] = summary["var"]
            columns["w2_risk_var_se"] = summary["var_se"]
    if quantiles:
        band = result.quantiles("w2_risk", quantiles)
        for index, q in enumerate(quantiles):
            columns[f"w2_risk_q{q:g}"] = band[:, index]
    for curve in theory_curves(study):
        columns[curve.column] = curve.values
    for name in REQUIRED_COLUMNS:
        columns.setdefault(name, [None] * (generations + 1))
    return _table(columns, generations)


def _csv_text(header, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _config(study, settings: RunSettings) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "command": _command(study),
        "study": study.to_json(),
        "run": asdict(settings) | {
            "quantiles": list(settings.quantiles),
            "figure_samples": None if settings.figure_samples is None else list(settings.figure_samples),
        },
        "x64": bool(jax.config.jax_enable_x64),
        "environment": {
            "jaxcollapse": _version(), "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "backend": jax.default_backend(),
        },
    }


def _version() -> str:
    from . import __version__

    return __version__


STUDIES = {"gaussian": GaussianStudy, "discrete": DiscreteStudy, "gmm": GMMStudy, "kde": KDEStudy,
           "regression": RegressionStudy}


def _command(study) -> str:
    if isinstance(study, DiscreteStudy):
        return "discrete"
    return getattr(study, "command", "gaussian")


def load_config(folder) -> tuple[GaussianStudy | DiscreteStudy, RunSettings, dict]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{folder} holds no config.json; it is not a jaxcollapse run folder")
    blob = json.loads(path.read_text())
    if blob.get("command") not in STUDIES:
        raise ConfigError(f"{path} describes a {blob.get('command')!r} run; only {', '.join(STUDIES)} runs can be rerun")
    run = dict(blob["run"])
    run["quantiles"] = tuple(run["quantiles"])
    run["figure_samples"] = None if run["figure_samples"] is None else tuple(run["figure_samples"])
    return STUDIES[blob["command"]].from_json(blob["study"]), RunSettings(**run), blob


CHECKPOINT = "checkpoint.npz"  # the engine's state while a run is unfinished (deleted once it is)


OUTPUT_FILES = (
    "summary.csv", "config.json", "check.csv", "report.md", "risk.png", "trajectories.png", "states.csv",
    "chains.csv", "figure3.png", "collapse.png", "absorption.png", "figure7.png", "figure13.png", "metrics.png",
)


def _refuse_unusable_folder(folder: Path, force: bool) -> None:
    if (folder / "summary.csv").exists() and not force:
        raise ConfigError(f"out folder {folder} already holds a finished run (summary.csv); pass --force to overwrite it")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"out {folder} exists and is not a folder")


def prepare_folder(folder, force: bool) -> Path:
    """Make ``folder`` ready for a run: a finished run is refused unless ``force``; an
    unfinished one's checkpoint is kept (the run resumes from it) unless ``force``."""
    folder = Path(folder)
    _refuse_unusable_folder(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    # the finished-run marker goes first, so an interrupted forced run never looks finished
    for name in OUTPUT_FILES + ((CHECKPOINT,) if force else ()):
        (folder / name).unlink(missing_ok=True)
    return folder


def _start_run(study, settings: RunSettings, folder, force: bool) -> tuple[Path, dict[str, Path]]:
    """Prepare the folder and write config.json first: a run can always be repeated.

    In a multi-process run, process 0 prepares the folder and every process waits for it
    before reading a checkpoint to resume from; a folder that cannot be used is refused by
    every process (none is left waiting for the others)."""
    folder = Path(folder)
    paths = {"config": folder / "config.json"}
    if not is_main_process():
        _refuse_unusable_folder(folder, force)
    else:
        folder = prepare_folder(folder, force)
        atomic_text(paths["config"], json.dumps(_config(study, settings), indent=2) + "\n")
        if (folder / CHECKPOINT).exists() and settings.progress is not False:
            print(f"resuming the unfinished run in {folder} from its {CHECKPOINT}", file=sys.stderr)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxcollapse: run folder {folder} ready")
    return folder, paths


def _simulate(study, settings: RunSettings, folder: Path | None = None, **options) -> SimulationResult:
    """The run's simulation; with a ``folder``, checkpointed to its checkpoint.npz (and
    resumed from it)."""
    checkpoint = {} if folder is None else dict(
        checkpoint=folder / CHECKPOINT, checkpoint_every=settings.checkpoint_every,
        identity={"command": _command(study), "study": study.to_json()})
    return simulate(
        study.program(), num_chains=settings.chains, num_generations=study.generations, seed=settings.seed,
        record="summary", chunk_size=settings.chunk_size, num_devices=settings.devices,
        progress=settings.progress if is_main_process() else False,
        **checkpoint, **options,
    )


def _finish_run(folder: Path, paths: dict, result, rows, *, per_state: bool, figure_writer, title: str,
                facts: list[str], summary) -> tuple[dict[str, Path], list]:
    """check.csv, the figures (``figure_writer()`` -> names, or None), report.md, and
    summary.csv last: its presence marks the run finished. Only process 0 of a
    multi-process run writes (and runs the figures' extra simulations on its devices)."""
    if not is_main_process():
        return {}, rows
    paths["check"] = folder / "check.csv"
    atomic_text(paths["check"], _check_csv(rows, per_state=per_state))
    figure_names = figure_writer() if figure_writer is not None else []
    paths.update({name: folder / name for name in figure_names})
    paths["report"] = folder / "report.md"
    atomic_text(paths["report"], _report(title, facts, result, rows, figure_names))
    paths["summary"] = folder / "summary.csv"
    atomic_text(paths["summary"], _csv_text(*summary))
    (folder / CHECKPOINT).unlink(missing_ok=True)  # finished: summary.csv holds everything it did
    return paths, rows


def run_gaussian(study: GaussianStudy, settings: RunSettings, folder, *, force: bool = False,
                 figures: bool = True) -> tuple[dict[str, Path], list]:
    """Run ``study`` and write its folder; returns the paths written and the theory rows
    (:func:`jaxcollapse.check.theory_table`) that check.csv holds."""
    folder, paths = _start_run(study, settings, folder, force)
    result = _simulate(study, settings, folder, quantile_metrics=("w2_risk",) if settings.quantiles else ())
    return _finish_run(
        folder, paths, result, theory_table(study, result), per_state=False,
        figure_writer=(lambda: _write_figures(study, settings, result, folder)) if figures else None,
        title="jaxcollapse Gaussian study", facts=[
            f"p0: {study.initial.describe()}, dimension {study.dim}",
            f"regime: {study.policy.describe()}; schedule: {study.schedule.describe()}; estimator: {study.estimator}",
            f"{settings.chains} chains, {study.generations} generations, seed {settings.seed}, path {study.resolved_path}",
        ], summary=summary_rows(study, result, settings.quantiles),
    )


def _write_figures(study, settings, result, folder: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from .plots import plot_risk, plot_trajectories, trajectory_runs

    names = []
    figure = plot_risk(study, result, quantiles=(min(settings.quantiles, default=0.05), max(settings.quantiles, default=0.95)))
    figure.savefig(folder / "risk.png", dpi=120)
    plt.close(figure)
    names.append("risk.png")
    figure_sizes = settings.figure_sizes(GAUSSIAN_FIGURE_SAMPLES)
    if study.generations and figure_sizes:
        sizes = [m for m in figure_sizes if m >= minimum_samples(study.dim, study.estimator)]
        if sizes:
            figure = plot_trajectories(study, trajectory_runs(study, sizes, seed=settings.seed))
            figure.savefig(folder / "trajectories.png", dpi=120)
            plt.close(figure)
            names.append("trajectories.png")
    return names


def _report(title: str, facts: list[str], result, rows, figure_names) -> str:
    """report.md: the run's facts, the theory check and the figures."""
    lines = [f"# {title}", ""] + [f"- {fact}" for fact in facts] + [
        f"- compile {result.compile_seconds:.2f} s, run {result.run_seconds:.2f} s", "",
        "## Theory against simulation", "", "```", format_check(rows).rstrip(), "```", "",
    ]
    disagreeing = [v for v in verdicts(rows) if not v.agrees]
    if disagreeing:
        lines += ["Formulas that the simulation contradicts (|z| > 5): " + "; ".join(
            f"{v.quantity} by {v.formula}" for v in disagreeing) + ". See docs/theory.md and docs/discrete.md for why.", ""]
    for name in figure_names:
        lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def _check_csv(rows, per_state: bool) -> str:
    state = ["state"] if per_state else []
    return _csv_text(
        ["generation"] + state + ["quantity", "formula", "kind", "monte_carlo", "standard_error", "formula_value", "z"],
        [[str(r.generation)] + (["" if r.state < 0 else str(r.state)] if per_state else [])
         + [r.quantity, r.formula, r.kind, _number(r.estimate), _number(r.standard_error), _number(r.value), _number(r.z)]
         for r in rows],
    )


def resume(folder, *, figures: bool = True) -> tuple[dict[str, Path], list] | None:
    """Finish the run in ``folder`` from its config.json and checkpoint.npz (a run killed
    at any moment ends bit-identical to an uninterrupted one); None if it had finished."""
    study, settings, blob = load_config(folder)
    if (Path(folder) / "summary.csv").is_file():
        return None
    return _runner(study, blob)(study, settings, folder, figures=figures)


def _runner(study, blob: dict):
    """The function that writes ``study``'s run folder, with the run's float precision set."""
    if blob.get("x64") != bool(jax.config.jax_enable_x64):
        jax.config.update("jax_enable_x64", bool(blob.get("x64")))
    return {"gaussian": run_gaussian, "discrete": run_discrete}.get(_command(study), run_study)


def rerun(folder, out=None, *, force: bool = False, figures: bool = True) -> tuple[Path, bool]:
    """Repeat the run in ``folder`` (any run kind) into ``out`` (default: ``folder``
    + '-rerun') and say whether its summary.csv is byte-identical to the original's."""
    study, settings, blob = load_config(folder)
    out = Path(out) if out is not None else Path(str(Path(folder).resolve()) + "-rerun")
    if out.resolve() == Path(folder).resolve():
        raise ConfigError("rerun --out must differ from the run folder (the original is what it is compared with)")
    original = Path(folder) / "summary.csv"
    original_bytes = original.read_bytes() if original.is_file() else None
    paths, _ = _runner(study, blob)(study, settings, out, force=force, figures=figures)
    identical = original_bytes is not None and original_bytes == paths["summary"].read_bytes()
    return out, identical



DISCRETE_REQUIRED_COLUMNS = (
    "generation", "samples", "support_mean", "support_se", "heterozygosity_mean", "heterozygosity_se",
    "heterozygosity_exact", "absorbed_fraction",
)


def discrete_summary_rows(study: DiscreteStudy, result: SimulationResult) -> tuple[list[str], list[list[str]]]:
    """summary.csv of a discrete run: per generation, every scalar metric's mean and
    standard error and every scalar formula."""
    generations = result.num_generations
    columns = _generation_columns(study, result)
    for metric in result.metric_names:
        if metric.startswith("state_"):
            continue
        summary = result.summary(metric)
        columns[f"{metric}_mean"] = summary["mean"]
        columns[f"{metric}_se"] = summary["se"]
    if "absorbed_mean" in columns:
        columns["absorbed_fraction"] = columns["absorbed_mean"]
    elif "extinct_mean" in columns:
        columns["absorbed_fraction"] = columns["extinct_mean"]
    for curve in theory_curves(study):
        if curve.values.ndim == 1 and curve.column not in columns:
            columns[curve.column] = curve.values
    if study.kind != "poisson":
        for name in DISCRETE_REQUIRED_COLUMNS:
            columns.setdefault(name, [None] * (generations + 1))
    return _table(columns, generations)


def _states_rows(study: DiscreteStudy, result: SimulationResult):
    metrics = [m for m in result.metric_names if m.startswith("state_")]
    curves = [c for c in theory_curves(study) if c.values.ndim == 2]
    header = ["generation", "state", "p0"] + [f"{m}_{s}" for m in metrics for s in ("mean", "se")] + [c.column for c in curves]
    summaries = {m: result.summary(m) for m in metrics}
    rows = []
    for g in range(result.num_generations + 1):
        for state in range(study.states):
            row = [str(g), str(state), _number(study.p0[state])]
            for m in metrics:
                row += [_number(summaries[m]["mean"][g, state]), _number(summaries[m]["se"][g, state])]
            row += [_number(c.values[g, state]) for c in curves]
            rows.append(row)
    return header, rows


def run_discrete(study: DiscreteStudy, settings: RunSettings, folder, *, force: bool = False,
                 figures: bool = True) -> tuple[dict[str, Path], list]:
    """Run a discrete ``study`` and write its folder: config.json, summary.csv (per
    generation), states.csv (per generation and state, K <= 64 by default), chains.csv
    (each chain's absorption generation and state), check.csv, report.md and figures."""
    folder, paths = _start_run(study, settings, folder, force)
    result = _simulate(study, settings, folder, metrics=study.summary_metrics(), final_metrics=study.final_metrics())
    rows = theory_table(study, result) + absorption_time_rows(study, result.final["absorption_generation"])
    paths["chains"] = folder / "chains.csv"
    final_names = list(result.final)
    atomic_text(paths["chains"], _csv_text(
        ["chain"] + final_names,
        [[str(i)] + [str(int(result.final[name][i])) for name in final_names] for i in range(result.num_chains)],
    ))
    if study.records_per_state:
        paths["states"] = folder / "states.csv"
        atomic_text(paths["states"], _csv_text(*_states_rows(study, result)))

    def figure_writer():
        from .plots import write_discrete_figures

        return write_discrete_figures(study, settings, result, folder)

    absorbed = float(np.mean(result.final["absorption_generation"] >= 0))
    return _finish_run(
        folder, paths, result, rows, per_state=True, figure_writer=figure_writer if figures else None,
        title=f"jaxcollapse discrete study ({study.kind})", facts=[
            f"p0: {study.initial.describe()}",
            f"regime: {study.policy.describe()}; schedule: {study.schedule.describe()}; smoothing: {study.smoothing:g}",
            f"{settings.chains} chains, {study.generations} generations, seed {settings.seed}, path {study.resolved_path}",
            f"absorbed by generation {study.generations}: {absorbed:.4f} of the chains",
        ], summary=discrete_summary_rows(study, result),
    )


def study_summary_rows(study, result: SimulationResult, quantiles=()) -> tuple[list[str], list[list[str]]]:
    """summary.csv of a GMM, KDE or regression run: per generation every metric's mean
    and standard error (a vector metric gives one column pair per entry,
    ``weight_0_mean``...), the sketched quantiles of ``study.quantile_metrics()`` and every
    formula's values."""
    generations = result.num_generations
    columns = _generation_columns(study, result)
    for metric in result.metric_names:
        summary = result.summary(metric)
        if summary["mean"].ndim == 1:
            columns[f"{metric}_mean"], columns[f"{metric}_se"] = summary["mean"], summary["se"]
            continue
        for index in range(summary["mean"].shape[1]):
            columns[f"{metric}_{index}_mean"] = summary["mean"][:, index]
            columns[f"{metric}_{index}_se"] = summary["se"][:, index]
    for metric in _quantile_metrics(study) if quantiles else ():
        band = result.quantiles(metric, quantiles)
        for index, q in enumerate(quantiles):
            columns[f"{metric}_q{q:g}"] = band[:, index]
    for curve in theory_curves(study):
        columns.setdefault(curve.column, curve.values)
    return _table(columns, generations)


def _quantile_metrics(study) -> tuple[str, ...]:
    return tuple(getattr(study, "quantile_metrics", lambda: ())())


def run_study(study, settings: RunSettings, folder, *, force: bool = False,
              figures: bool = True) -> tuple[dict[str, Path], list]:
    """Run a GMM, KDE or regression ``study`` and write its folder: config.json,
    summary.csv, check.csv (its formulas against the simulation), report.md, figures."""
    folder, paths = _start_run(study, settings, folder, force)
    result = _simulate(study, settings, folder, metrics=study.summary_metrics(),
                       quantile_metrics=_quantile_metrics(study) if settings.quantiles else ())

    def figure_writer():
        from .plots import write_study_figures

        return write_study_figures(study, settings, result, folder)

    return _finish_run(
        folder, paths, result, theory_table(study, result), per_state=False,
        figure_writer=figure_writer if figures else None, title=f"jaxcollapse {study.command} study",
        facts=study.describe() + [f"{settings.chains} chains, {study.generations} generations, seed {settings.seed}"],
        summary=study_summary_rows(study, result, settings.quantiles),
    )
