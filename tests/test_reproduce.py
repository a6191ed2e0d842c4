"""jaxcollapse reproduce: sections run as ordinary run folders, the report builds with the
figures and every formula's verdict, finished sections are kept, skipped ones say why."""

import io

import pytest

from jaxcollapse import ConfigError
from jaxcollapse import reproduce as reproduce_module
from jaxcollapse.reproduce import Section, reproduce, sections
from jaxcollapse.sweep import load_sweep


def _small_sections(scale="quick", opt_checkpoint=None):
    return [
        Section("figure6-gaussian-accumulate", "Figure 6: fitted to the whole pool", "The risk stays bounded.",
                "gaussian", {"samples": 20, "generations": 4, "chains": 256, "regime": "accumulate",
                             "figure_samples": (20,), "check": True}, ("trajectories.png", "risk.png")),
        Section("figure10-15-lm", "Figures 10-15", "Perplexity rises.", "lm", {}, ("figure10_test_perplexity.png",),
                skipped="needs a checkpoint"),
        Section("figure12-gaussian-estimation", "Figure 12: estimating N(0, 1)", "Error falls as 1/sqrt(M).",
                "sweep", {}, ("figure12.png",),
                sweep='command = "gaussian"\n[base]\nchains = 400\ngenerations = 1\nfigure-samples = ""\n'
                      '[grid]\nsamples = [10, 1000]\n'),
    ]


def test_the_report_holds_figures_verdicts_and_skips(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_module, "sections", _small_sections)
    stream = io.StringIO()
    report = reproduce(tmp_path, stream=stream)
    text = report.read_text()
    assert "## Figure 6: fitted to the whole pool" in text and "**The paper:** The risk stays bounded." in text
    assert "jaxcollapse gaussian --samples 20 --generations 4 --chains 256 --regime accumulate" in text
    for name in ("trajectories.png", "risk.png"):
        assert f"![{name}](figure6-gaussian-accumulate/{name})" in text
        assert (tmp_path / "figure6-gaussian-accumulate" / name).stat().st_size > 1000
    assert "| E[var_x] | exact | exact | agrees |" in text  # accumulate's exact law, checked
    assert "formulas agree within 5 standard errors" in text
    assert "**Skipped:** needs a checkpoint." in text and "skipped (needs a checkpoint)" in stream.getvalue()
    assert (tmp_path / "figure12-gaussian-estimation" / "figure12.png").stat().st_size > 1000
    rows = [line for line in text.splitlines() if line.startswith(("| 10 |", "| 1000 |"))]
    assert len(rows) == 2 and rows[1].split("|")[3].strip() == "0.03162"  # exact 1/sqrt(1000)
    assert abs(float(rows[1].split("|")[4])) <= 5  # E[(mu_hat - mu)^2] against 1/M, in standard errors
    summary = tmp_path / "figure6-gaussian-accumulate" / "summary.csv"
    stamp = summary.stat().st_mtime_ns
    stream = io.StringIO()
    reproduce(tmp_path, stream=stream)
    assert "finished earlier" in stream.getvalue() and summary.stat().st_mtime_ns == stamp


def test_sections_at_paper_scale_and_bad_choices(tmp_path):
    paper = {s.name: s for s in sections("paper")}
    assert all("--opt-checkpoint" in paper[name].skipped
               for name in ("figure10-11-15-lm", "figure10b-lm-10pct-real", "figure14-lm-penalty"))
    assert paper["figure4-gaussian-replace"].argv[paper["figure4-gaussian-replace"].argv.index("--generations") + 1] == "1000"
    assert paper["figure7-13-gmm"].argv[paper["figure7-13-gmm"].argv.index("--generations") + 1] == "2050"
    with_checkpoint = {s.name: s for s in sections("paper", opt_checkpoint="/ckpt")}
    lm = with_checkpoint["figure14-lm-penalty"]
    assert lm.skipped is None and "/ckpt" in lm.argv and lm.argv[lm.argv.index("--repetition-penalty") + 1] == "2"
    from jaxcollapse.cli import build_parser
    from jaxcollapse.studies import command

    parser = build_parser()
    for scale in ("quick", "paper"):
        for section in sections(scale, opt_checkpoint="/ckpt"):  # every section's settings are valid ones
            if section.sweep is not None:
                (tmp_path / "sweep.toml").write_text(section.sweep)
                assert len(load_sweep(tmp_path / "sweep.toml")[1]) == 9  # M from 10 to 10^7
            else:
                command(section.command).values(section.settings)
                parser.parse_args(list(section.argv) + ["--out", "x"])  # and its command line a valid one
    with pytest.raises(ConfigError, match="scale"):
        sections("huge")
    with pytest.raises(ConfigError, match="no section starts with figure99"):
        reproduce("unused", only=("figure99",))


@pytest.mark.slow
def test_the_quick_reproduction_writes_every_figure(tmp_path):
    """The whole quick scale (about 3 minutes on 2 cores)."""
    report = reproduce(tmp_path, stream=io.StringIO()).read_text()
    for section in sections("quick"):
        for name in section.figures:
            assert (tmp_path / section.name / name).is_file(), (section.name, name)
            assert f"({section.name}/{name})" in report
