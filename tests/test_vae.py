"""VAE family: shapes, training, vmapped runs, sampling, data loaders, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse import ConfigError
from jaxcollapse.images import check_images, load_images
from jaxcollapse.vae import (
    TrainConfig, VAEConfig, encode_means, generate, init_params, negative_elbo, parameter_count, train, vae_family,
)

TINY = VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(32,))


@pytest.fixture(scope="module")
def digits():
    return load_images("digits").images[:384]


def test_the_papers_architecture_has_its_parameter_count_and_shapes():
    config = VAEConfig()  # conv 64/128, 20-d latent, 28x28
    assert parameter_count(config) == 647_081  # the paper's "about 647k"
    params = init_params(jax.random.key(0), config)
    images = jnp.zeros((3, 28, 28, 1))
    assert encode_means(config, params, images).shape == (3, 20)
    assert generate(jax.random.key(1), config, params, 3).shape == (3, 28, 28, 1)


def test_the_transposed_convolution_equals_flax_conv_transpose_with_its_gradients():
    from flax import nnx

    from jaxcollapse._xla_cpu.conv import doubling_conv_transpose as _doubling_conv_transpose

    def reference(x, kernel, bias):  # what nnx.ConvTranspose computes, differentiated by JAX
        return jax.lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias

    for channels_in, channels_out, (height, width) in (((5, 3, (4, 4))), (3, 1, (7, 5)), (6, 8, (2, 3))):
        layer = nnx.ConvTranspose(channels_in, channels_out, (4, 4), strides=2, padding=((2, 2), (2, 2)),
                                  rngs=nnx.Rngs(channels_in))
        kernel, bias = layer.kernel[...], layer.bias[...] + 0.5
        layer.bias[...] = bias
        x = jax.random.normal(jax.random.key(height), (2, height, width, channels_in))
        expected = layer(x)
        assert expected.shape == (2, 2 * height, 2 * width, channels_out)
        cotangent = jax.random.normal(jax.random.key(7), expected.shape)

        def gradients(form, x, kernel):
            return jax.grad(lambda *args: jnp.sum(form(*args) * cotangent), argnums=(0, 1, 2))(x, kernel, bias)

        @jax.jit  # one compilation per configuration (op by op, each primitive compiles alone)
        def everything(x, kernel):
            kernels, xs = jnp.stack([kernel, -2.0 * kernel]), jnp.stack([x, x[::-1]])
            # vmapped over kernels (runs trained at once) and inputs: each slice as alone
            batched = jax.vmap(lambda x, kernel: gradients(_doubling_conv_transpose, x, kernel))(xs, kernels)
            alone = [gradients(reference, xs[run], kernels[run]) for run in range(2)]
            return (reference(x, kernel, bias), _doubling_conv_transpose(x, kernel, bias),
                    gradients(_doubling_conv_transpose, x, kernel), gradients(reference, x, kernel), batched, alone)

        forward_reference, forward_ours, ours, theirs, batched, alone = everything(x, kernel)
        np.testing.assert_allclose(forward_reference, expected, atol=1e-5)
        np.testing.assert_allclose(forward_ours, expected, atol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, atol=1e-4)
        for run in range(2):
            for a, b in zip(batched, alone[run]):
                np.testing.assert_allclose(a[run], b, atol=1e-4)


def test_a_step_in_chunks_and_lanes_equals_one_pass(monkeypatch):
    import jaxcollapse.vae_train as vae_module
    from jaxcollapse.vae_train import CPU_CHUNK, CPU_CHUNKS, _chunk_size

    config = VAEConfig(image_shape=(8, 8), channels=(4, 6), latent=3)
    rows, train_config = 40, TrainConfig(epochs=1, batch_size=40)
    images = jax.random.uniform(jax.random.key(1), (rows, 8, 8, 1))
    weights = jnp.ones(rows).at[jnp.array([3, 17, 30])].set(0.0)  # masked rows count for nothing

    def first_step(chunk):
        monkeypatch.setattr(vae_module, "_chunk_size", lambda config, batch: chunk)
        trainer = vae_module._trainer(config, train_config, rows)
        state, epoch_keys = trainer.init(jax.random.key(0))
        order, step_keys = trainer.epoch_plan(epoch_keys[0], weights)
        (_, opt_state), value = jax.jit(trainer.step)(state, images, weights, order, 0, step_keys[0])
        return value, opt_state[1][0].mu  # Adam's first moment after one step: 0.1 x the gradient

    whole_value, whole_gradient = first_step(None)
    for chunk in (7, 40):  # 6 chunks, the last uneven, 3 in each lane; one chunk
        value, gradient = first_step(chunk)
        np.testing.assert_allclose(value, whole_value, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(gradient), jax.tree.leaves(whole_gradient)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
    monkeypatch.undo()
    if jax.default_backend() == "cpu":
        assert _chunk_size(config, 256) == max(CPU_CHUNK, 256 // CPU_CHUNKS)
        assert _chunk_size(config, 8 * CPU_CHUNK * CPU_CHUNKS) == 8 * CPU_CHUNK  # never more than CPU_CHUNKS passes
    assert _chunk_size(TINY, 256) is None


def _first_host_step(config, train_config, rows):
    """The compiled host-loop step of one run and the arguments of its first call."""
    from jaxcollapse.vae_train import _host_steps

    init, plan, step = _host_steps(config, train_config, rows, None)
    state, epoch_keys = init(jax.random.split(jax.random.key(0), 1))
    images, weights = jnp.zeros((rows, *config.image_shape, 1)), jnp.ones(rows)
    order, step_keys = plan(epoch_keys[:, 0], weights)
    return step, (state, images, weights, order, 0, step_keys[:, 0])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="chunks and the gradient's loop are CPU-only")
@pytest.mark.slow  # 9 s cold; the chunked step's result is checked fast in test_a_step_in_chunks_and_lanes_equals_one_pass
def test_a_chunked_step_sums_its_gradient_once():
    # the chunks' gradients are summed into a buffer of their own (a loop XLA:CPU keeps:
    # test_fusion), not recomputed in each of Adam's updates; an unchunked step needs none
    def lowered_step(config, rows):
        step, arguments = _first_host_step(config, TrainConfig(epochs=1, batch_size=32), rows)
        return step.lower(*arguments).as_text(debug_info=True)

    assert '/materialize"' in lowered_step(VAEConfig(image_shape=(8, 8), channels=(4, 6), latent=3), 64)
    assert '/materialize"' not in lowered_step(TINY, 64)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the compiler options are CPU-only")
@pytest.mark.slow  # 13 s cold: a compiler-flag check; the step's speed is benchmarks/vae.py's
def test_the_cpu_conv_step_compiles_convolutions_outside_ynnpack():
    import re

    from jaxcollapse._xla_cpu.conv import COMPILER_OPTIONS as CPU_CONV_COMPILER_OPTIONS
    from jaxcollapse.vae_train import _compiler_options, _trainer

    config, train_config, rows = VAEConfig(), TrainConfig(epochs=1, batch_size=32), 64  # the paper's layers, 2 chunks
    step, arguments = _first_host_step(config, train_config, rows)

    def ynn_convolutions(text):  # YNNPACK fusions whose body holds a convolution
        bodies = dict(re.findall(r"^(%\S+) .*?\{\n(.*?)\n\}", text, re.S | re.M))
        called = re.findall(r"calls=(%[^,\s]+).*__ynn_fusion", text)
        return sum(" convolution(" in bodies.get(name, "") for name in called)

    assert dict(_compiler_options(config)) == CPU_CONV_COMPILER_OPTIONS
    assert _compiler_options(TINY) == ()
    text = step.lower(*arguments).compile().as_text()
    assert text.count(" convolution(") >= 2 * 7 and ynn_convolutions(text) == 0
    # XLA's defaults send them to YNNPACK: the check above can tell
    trainer = _trainer(config, train_config, rows)
    default = jax.jit(jax.vmap(trainer.step, in_axes=(0, None, None, 0, None, 0))).lower(*arguments).compile()
    assert ynn_convolutions(default.as_text()) >= 2 * 8


def test_training_lowers_the_loss_and_the_heldout_elbo(digits):
    config = TrainConfig(epochs=12, batch_size=64)
    params, losses = jax.jit(lambda key: train(key, TINY, config, digits))(jax.random.key(0))
    losses = np.asarray(losses)
    assert losses[-1] < 0.8 * losses[0] and np.all(np.isfinite(losses))
    heldout = load_images("digits").images[1500:]
    untrained = init_params(jax.random.key(0), TINY)
    assert float(negative_elbo(jax.random.key(2), TINY, params, heldout)) < \
        0.8 * float(negative_elbo(jax.random.key(2), TINY, untrained, heldout))


@pytest.mark.slow  # 9 s cold; vmapped runs are checked fast against runs in turn in test_the_host_loop_and_runs_in_turn_equal_the_vmapped_scan
def test_vmapped_runs_equal_separate_runs_with_the_same_keys(digits):
    config = TrainConfig(epochs=1, batch_size=64)
    keys = jax.random.split(jax.random.key(3), 3)
    batched, batched_losses = jax.jit(jax.vmap(lambda key: train(key, TINY, config, digits)))(keys)
    for run in (2,):
        single, single_losses = jax.jit(lambda key: train(key, TINY, config, digits))(keys[run])
        np.testing.assert_allclose(batched_losses[run], single_losses, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[run], b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # 11 s; every default VAE run on a CPU trains through the host loop
def test_the_host_loop_and_runs_in_turn_equal_the_vmapped_scan(digits):
    from jaxcollapse.vae import train_runs

    config = TrainConfig(epochs=1, batch_size=64)
    keys = jax.random.split(jax.random.key(5), 2)
    scanned = train_runs(keys, TINY, config, digits[:192], loop="scan")
    for loop, batch_runs in (("host", False),):
        other = train_runs(keys, TINY, config, digits[:192], loop=loop, batch_runs=batch_runs)
        np.testing.assert_allclose(other[1], scanned[1], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(other[0]), jax.tree.leaves(scanned[0])):
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow  # 24 s cold; the vmapped conv gradient is checked fast in the transposed-convolution test
def test_vmapped_conv_runs_in_lanes_equal_runs_in_turn():
    # the chunked CPU step (3 chunks of 16 in two lanes: one chunk waits) under jax.vmap
    from jaxcollapse.vae import train_runs

    config = VAEConfig(image_shape=(8, 8), channels=(4, 6), latent=3)
    images = jax.random.uniform(jax.random.key(4), (80, 8, 8, 1))
    keys = jax.random.split(jax.random.key(5), 2)
    train_config = TrainConfig(epochs=1, batch_size=40)
    batched = train_runs(keys, config, train_config, images, loop="host", batch_runs=True)
    in_turn = train_runs(keys, config, train_config, images, loop="host", batch_runs=False)
    np.testing.assert_allclose(batched[1], in_turn[1], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(batched[0]), jax.tree.leaves(in_turn[0])):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_masked_rows_do_not_train(digits):
    """Rows of weight 0 (a data policy's padding) have no effect: changing their pixels
    changes nothing, and with every row masked the parameters stay at initialisation."""
    config = TrainConfig(epochs=2, batch_size=64)
    weights = (np.arange(len(digits)) % 2).astype(np.float32)
    scrambled = np.where(weights[:, None, None, None] > 0, digits, 1.0 - digits)
    run = jax.jit(lambda images, weights: train(jax.random.key(4), TINY, config, images, weights))
    first, first_losses = run(digits, weights)
    second, second_losses = run(scrambled, weights)
    np.testing.assert_array_equal(first_losses, second_losses)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
    frozen, _ = run(digits, np.zeros(len(digits), np.float32))
    untouched = init_params(jax.random.split(jax.random.key(4))[0], TINY)
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(untouched)):
        np.testing.assert_array_equal(a, b)


def test_sampling_under_jit_in_both_modes(digits):
    params = init_params(jax.random.key(5), TINY)
    means = jax.jit(lambda key: generate(key, TINY, params, 16))(jax.random.key(6))
    assert means.shape == (16, 8, 8, 1) and float(means.min()) > 0 and float(means.max()) < 1
    draws = jax.jit(lambda key: generate(key, TINY, params, 16, "bernoulli"))(jax.random.key(6))
    assert set(np.unique(np.asarray(draws))) <= {0.0, 1.0}


def test_family_interface_fits_and_samples_flat_rows(digits):
    family = vae_family(TINY, TrainConfig(epochs=1, batch_size=64))
    rows = jnp.asarray(digits.reshape(len(digits), -1))
    params = family.fit(jax.random.key(7), rows, jnp.ones(len(rows)))
    assert family.sample(jax.random.key(8), params, 10).shape == (10, 64)
    assert np.isfinite(float(family.metrics(params, jnp.asarray(digits[:50]))["negative_elbo"]))


def test_data_loaders_work_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    digits = load_images("digits")
    assert digits.images.shape == (1797, 8, 8, 1) and digits.labels.shape == (1797,)
    mnist = load_images("mnist5k")
    assert mnist.images.shape == (5000, 28, 28, 1) and 0.0 <= mnist.images.min() and mnist.images.max() <= 1.0
    assert set(np.unique(mnist.labels)) == set(range(10))


@pytest.mark.parametrize("call, match", [
    (lambda: check_images(np.zeros((0, 8, 8))), "empty"),
    (lambda: check_images(np.zeros((4, 8, 8, 3))), "grey images"),
    (lambda: check_images(np.full((4, 8, 8), 2.0)), r"\[0, 1\]"),
    (lambda: TrainConfig(epochs=0), "epochs must be an integer >= 1"),
    (lambda: TrainConfig(batch_size=0), "batch_size must be an integer >= 1"),
    (lambda: TrainConfig(learning_rate=-1.0), "learning_rate must be > 0"),
    (lambda: VAEConfig(image_shape=(10, 10)), "multiples of 4"),
    (lambda: VAEConfig(architecture="gan"), "architecture"),
    (lambda: load_images("cifar"), "dataset"),
    (lambda: train(jax.random.key(0), TINY, TrainConfig(epochs=1), np.zeros((4, 28, 28))), "expects 8x8"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_an_interrupted_run_resumes_bit_for_bit(tmp_path):
    """Stopped after generation 1 and started again, a run ends with the same summary,
    latents and checkpoints as an uninterrupted one; finished generations are loaded, not
    retrained."""
    from jaxcollapse.vae_runs import VAEStudy, run_vae

    study = VAEStudy(generations=2, runs=2, dataset="digits", model=TINY, training=TrainConfig(epochs=2, batch_size=128),
                     heldout=200)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_vae(study, whole, figures=False, progress=False)
    run_vae(study, parts, figures=False, progress=False, stop_after=1)
    trained = parts / "checkpoints" / "generation_1" / "params_0-2.safetensors"
    first = trained.stat().st_mtime_ns
    assert not (parts / "checkpoints" / "generation_2").exists()
    run_vae(study, parts, figures=False, progress=False)
    assert trained.stat().st_mtime_ns == first  # not retrained
    assert (whole / "summary.csv").read_bytes() == (parts / "summary.csv").read_bytes()
    for generation in (1, 2):
        for name in ("params_0-2.safetensors", "samples_0-2.npz"):
            name = f"checkpoints/generation_{generation}/{name}"
            assert (whole / name).read_bytes() == (parts / name).read_bytes()
    with np.load(whole / "latents.npz") as a, np.load(parts / "latents.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ConfigError, match="different run"):
        run_vae(VAEStudy(generations=3, runs=2, dataset="digits", model=TINY), parts, figures=False, progress=False)


@pytest.mark.slow  # 8 s; the VAE runs of the default suite sample and encode through the same batching
def test_samples_and_latents_in_image_batches_equal_one_pass(tmp_path, monkeypatch):
    """Sampling and encoding go EVAL_BATCH images at a time (memory); the summary and the
    latents are those of one pass, whatever the batch (a short last batch is padded)."""
    from jaxcollapse import vae_runs, vae_train

    study = vae_runs.VAEStudy(generations=1, runs=2, dataset="digits", model=TINY,
                              training=TrainConfig(epochs=1, batch_size=128), heldout=200)
    vae_runs.run_vae(study, tmp_path / "one", figures=False, progress=False)
    monkeypatch.setattr(vae_train, "EVAL_BATCH", 500)  # 1597 images per run: 4 batches, the last padded
    calls = []
    original = vae_train.over_image_batches
    monkeypatch.setattr(vae_train, "over_image_batches",
                        lambda fn, arrays: calls.append(arrays.shape) or original(fn, arrays))
    vae_runs.run_vae(study, tmp_path / "batched", figures=False, progress=False)
    assert calls and all(shape[:2] == (2, 1597) for shape in calls)
    one, batched = (np.genfromtxt(tmp_path / name / "summary.csv", delimiter=",", names=True) for name in ("one", "batched"))
    for column in one.dtype.names:
        np.testing.assert_allclose(batched[column], one[column], rtol=1e-5, atol=1e-6)
    with np.load(tmp_path / "one" / "latents.npz") as a, np.load(tmp_path / "batched" / "latents.npz") as b:
        for key in a.files:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-5)


def test_cli_on_the_8x8_digits(tmp_path, capsys):
    import csv

    from jaxcollapse.cli import main

    out = tmp_path / "vae"
    assert main(["vae", "--dataset", "digits", "--generations", "2", "--runs", "2", "--epochs", "3",
                 "--batch-size", "128", "--no-progress", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["generation"] for r in rows] == ["0", "1", "2"]
    for column in ("heldout_nelbo_mean", "heldout_nelbo_se", "latent_sd_mean", "class_entropy_mean", "train_loss_mean"):
        assert rows[1][column] != "", column
    for name in ("config.json", "latents.npz", "figure8.png", "figure9.png", "report.md", "checkpoints/generation_2/params_0-2.safetensors"):
        assert (out / name).is_file(), name
    assert main(["vae", "--regime", "mix:0.5,0.5", "--out", str(tmp_path / "bad")]) == 2
    assert "mix needs three proportions" in capsys.readouterr().err
