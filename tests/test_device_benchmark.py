"""benchmarks/device.py runs on a CPU too (at the tests' tiny scale) and writes its JSON."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "device.py"


def _module():
    spec = importlib.util.spec_from_file_location("device_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_device_benchmarks_chain_measurements_run_here():
    import jaxcollapse as jc

    module = _module()
    program = jc.gaussian_study(samples=100, generations=3).program()
    limit = module.random_limit(256, program.words_per_step)
    run = module.chain_run(program, 256, 3)
    assert limit["words"] == 256 * program.words_per_step and limit["chain_generations_per_second"] > 0
    assert run["chain_generations_per_second"] > 0 and 0 < run["w2_risk_last"] < 1


@pytest.mark.slow  # 24 s cold: the VAE and OPT steps compile
def test_the_device_benchmark_runs_here_and_writes_every_figure(tmp_path):
    module = _module()
    out = tmp_path / "device.json"
    module.main(["--scale", "tiny", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["backend"] == "cpu" and report["scale"] == "tiny" and report["jax"]
    found = report["measurements"]
    rates = {"random_limit": "chain_generations_per_second", "sufficient": "chain_generations_per_second",
             "data": "chain_generations_per_second", "large_run": "chain_generations_per_second",
             "vae_step": "images_per_second", "opt_step": "tokens_per_second"}
    for name, rate in rates.items():
        assert math.isfinite(found[name][rate]) and found[name][rate] > 0, name
        assert found[name]["compile_seconds"] >= 0, name
    assert found["sufficient"]["share_of_random_limit"] > 0
    assert found["large_run"]["chains"] == module.SCALES["tiny"]["big_chains"]
    assert 0 < found["sufficient"]["w2_risk_last"] < 1
