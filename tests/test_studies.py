"""One house: the study registry, its options, the CLI and sweeps built from it, the
import graph without cycles, and the VAE and language model through resume, sweeps and
report.md like every other study."""

import ast
import csv
import io
from pathlib import Path

import jax
import pytest

from jaxcollapse import ConfigError, studies
from jaxcollapse.cli import build_parser, main
from jaxcollapse.studies.base import Option, floats
from jaxcollapse.sweep import load_sweep, run_sweep

PACKAGE = Path(__file__).parents[1] / "src" / "jaxcollapse"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, at module level or
    inside a function (either runs in some process)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: one path per cycle found by depth-first search."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_import_graph_has_no_cycle_and_nothing_imports_the_cli():
    graph = import_graph()
    assert "jaxcollapse.sweep" in graph and "jaxcollapse.studies.gaussian" in graph
    assert cycles(graph) == []
    assert [name for name, targets in graph.items() if "jaxcollapse.cli" in targets] == []
    # the check finds what it is for: a cycle of two modules, and one through three
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_registry_publishes_every_study_to_the_cli():
    names = list(studies.commands())
    assert names == ["gaussian", "discrete", "gmm", "kde", "regression", "lm", "vae"]
    parser = build_parser()
    for name, study_command in studies.commands().items():
        args = parser.parse_args([name])
        assert {option.name: getattr(args, option.name) for option in study_command.options} == \
            study_command.values({})  # the CLI's defaults are the options' defaults
    with pytest.raises(ConfigError, match="unknown study command 'nope'; known: gaussian, discrete"):
        studies.command("nope")


def test_options_read_python_toml_and_text_alike():
    quantiles = Option("quantiles", (0.05,), "", floats)
    assert quantiles.convert([0.1, 0.9]) == quantiles.convert("0.1,0.9") == (0.1, 0.9)
    assert quantiles.convert(None) == (0.05,)
    switch = Option("progress", None, "", None, negation="no_progress")
    assert (switch.convert(True), switch.convert(False), switch.convert(True, negated=True)) == (True, None, False)
    with pytest.raises(ConfigError, match="on/off switch"):
        switch.convert("yes")
    with pytest.raises(ConfigError, match="argument --samples: invalid value 'ten'"):
        studies.command("gaussian").values({"samples": "ten"})
    with pytest.raises(ConfigError, match="unrecognized arguments: sampels"):
        studies.command("gaussian").values({"sampels": 10})
    values = studies.command("gaussian").values({"no-progress": True, "chunk-size": 32})
    assert values["progress"] is False and values["chunk_size"] == 32


def test_a_registered_study_reaches_the_cli(monkeypatch):
    from jaxcollapse.studies import base

    gaussian = studies.command("gaussian")
    mine = base.StudyCommand("mine", "my own study", gaussian.options, gaussian.build, gaussian.from_json)
    monkeypatch.setattr(studies, "_REGISTERED", {})
    studies.register(mine)
    assert studies.command("mine") is mine and "mine" in build_parser().parse_args(["mine"]).command


def test_an_installed_packages_study_reaches_the_cli_and_a_broken_one_is_skipped(monkeypatch):
    """Entry points in the group jaxcollapse.studies publish a package's study commands in
    every process; one that fails to load is skipped with a warning naming it, and none
    replaces a command of jaxcollapse's own."""
    import importlib.metadata
    import sys
    import types

    from jaxcollapse.studies import base

    gaussian = studies.command("gaussian")
    plugin = types.ModuleType("my_plugin")
    plugin.COMMAND = base.StudyCommand("plugged", "a plugin's study", gaussian.options, gaussian.build,
                                       gaussian.from_json)
    plugin.IMPOSTOR = base.StudyCommand("gaussian", "not the real one", gaussian.options, gaussian.build,
                                        gaussian.from_json)
    monkeypatch.setitem(sys.modules, "my_plugin", plugin)
    entries = [importlib.metadata.EntryPoint(name, value, studies.ENTRY_POINTS) for name, value in (
        ("plugged", "my_plugin:COMMAND"), ("broken", "no_such_module_anywhere:COMMAND"),
        ("impostor", "my_plugin:IMPOSTOR"))]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [entry for entry in entries if entry.group == group])
    with pytest.warns(UserWarning, match="'broken' .* could not be loaded"):
        known = studies.commands()
        parsed = build_parser().parse_args(["plugged"])  # the CLI lists the commands again
    assert known["plugged"] is plugin.COMMAND and known["gaussian"] is gaussian
    assert parsed.command == "plugged"
    with pytest.raises(ConfigError, match="register takes a StudyCommand"):
        studies.register("not a command")


def test_every_cell_is_checked_before_any_runs_and_x64_stays_in_its_cell(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('command = "gaussian"\n[base]\nchains = 16\ngenerations = 2\nsamples = 10\n'
                      '[[cells]]\nregime = "replace"\n[[cells]]\nregime = "bogus"\n')
    with pytest.raises(ConfigError, match="sweep cell 001-regime=bogus: unknown regime"):
        run_sweep(config, tmp_path / "out", figures=False, stream=io.StringIO())
    assert not (tmp_path / "out" / "cells").exists()  # nothing ran
    config.write_text('command = "gaussian"\n[base]\nchains = 16\ngenerations = 2\nsamples = 10\n'
                      '[grid]\nx64 = [true, false]\n')
    assert not jax.config.jax_enable_x64
    run_sweep(config, tmp_path / "x64", figures=False, stream=io.StringIO())
    assert not jax.config.jax_enable_x64  # the first cell's float64 did not leak
    import json

    precisions = [json.loads((tmp_path / "x64" / "cells" / name / "config.json").read_text())["x64"]
                  for name in ("000-x64=True", "001-x64=False")]
    assert precisions == [True, False]
    config.write_text('command = "gaussian"\nbase = "chains"\n')
    with pytest.raises(ConfigError, match="base must be a table"):
        load_sweep(config)


def _csv_rows(path):
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow  # 13 s; the language model's sweep cell is the default suite's neural one
def test_a_vae_sweep_cell_and_a_resumed_vae_run_end_alike(tmp_path, capsys):
    """The VAE is an ordinary study command: a sweep runs it, ``resume`` finishes an
    interrupted run bit for bit, and both write report.md."""
    from jaxcollapse.vae_runs import run_vae

    config = tmp_path / "sweep.toml"
    config.write_text('command = "vae"\n[base]\ndataset = "digits"\ngenerations = 2\nruns = 1\nepochs = 1\n'
                      'batch-size = 128\nheldout = 200\n[grid]\nseed = [3]\n')
    run_sweep(config, tmp_path / "sweep", figures=False, stream=io.StringIO())
    cell = tmp_path / "sweep" / "cells" / "000-seed=3"
    assert "| generation |" in (cell / "report.md").read_text()
    study = studies.command("vae").build(studies.command("vae").values(
        {"dataset": "digits", "generations": 2, "runs": 1, "epochs": 1, "batch_size": 128, "heldout": 200,
         "seed": 3}))[0]
    interrupted = tmp_path / "interrupted"
    run_vae(study, interrupted, figures=False, progress=False, stop_after=1)
    assert main(["resume", str(interrupted), "--no-figures"]) == 0
    assert (interrupted / "summary.csv").read_bytes() == (cell / "summary.csv").read_bytes()
    assert (interrupted / "report.md").is_file() and "resumed and finished" in capsys.readouterr().out
    table = _csv_rows(tmp_path / "sweep" / "summary.csv")
    assert [row["generation"] for row in table] == ["0", "1", "2"] and table[0]["cell_seed"] == "3"


def test_a_language_model_sweep_cell_and_a_resumed_run_end_alike(tmp_path):
    from jaxcollapse.lm.runs import run_lm

    settings = dict(generations=2, epochs=1, train_blocks=16, eval_blocks=8, block_size=16, new_tokens=16, vocab=24,
                    beams=2, batch_size=8, generation_batch=8)
    config = tmp_path / "sweep.toml"
    config.write_text('command = "lm"\n[base]\n' + "".join(f"{k} = {v}\n" for k, v in settings.items())
                      + '[grid]\nreal-fraction = [0.25]\n')
    run_sweep(config, tmp_path / "sweep", figures=False, stream=io.StringIO())
    cell = tmp_path / "sweep" / "cells" / "000-real_fraction=0.25"
    assert "test_perplexity" in (cell / "report.md").read_text()
    study = studies.command("lm").build(studies.command("lm").values({**settings, "real_fraction": 0.25}))[0]
    interrupted = tmp_path / "interrupted"
    run_lm(study, interrupted, progress=False, figures=False, stop_after=(0, 1, "fit"))
    assert main(["resume", str(interrupted), "--no-figures"]) == 0
    assert _csv_rows(interrupted / "summary.csv") == _csv_rows(cell / "summary.csv")


def test_a_study_command_without_the_run_options_is_refused_when_built():
    from jaxcollapse.studies import base

    with pytest.raises(ConfigError, match=r"lacks the options \['chains', 'check'"):
        base.StudyCommand("thin", "a command with one option", (Option("samples", 10, "", int),),
                          lambda values: None, lambda blob: None)
    with pytest.raises(ConfigError, match=r"lacks the options \['no_progress'\]"):
        base.StudyCommand("host", "", base.host_run_options("out")[:3], lambda values: None, lambda blob: None,
                          chains=False)


def test_the_api_reference_documents_every_public_module():
    """docs/api.md renders every public module's docstrings (mkdocstrings), the extension
    points included; the old layout's thin aliases, the packages' own __init__ and the CLI
    (documented in docs/cli.md) aside."""
    import pkgutil
    import re
    from pathlib import Path

    import jaxcollapse

    documented = set(re.findall(r"^::: (\S+)", (Path(__file__).parents[1] / "docs" / "api.md").read_text(), re.M))
    aside = {"jaxcollapse.cli", "jaxcollapse.families", "jaxcollapse.lm", "jaxcollapse.discrete", "jaxcollapse.gmm",
             "jaxcollapse.kde", "jaxcollapse.regression", "jaxcollapse.study"}
    public = {module.name for module in pkgutil.walk_packages(jaxcollapse.__path__, "jaxcollapse.")
              if not any(part.startswith("_") for part in module.name.split("."))}
    assert sorted(public - aside - documented) == []
