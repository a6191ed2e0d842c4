"""XLA:CPU's machinery stays in jaxcollapse._xla_cpu: model code does not import it, and the
CPU trainers hand it to the models through their hooks."""

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "jaxcollapse"
MODEL_MODULES = ("vae_model.py", "lm/opt.py")
CPU_MACHINERY = {"_xla_cpu", "heap", "_fusion"}


def imported_names(tree: ast.AST) -> set[str]:
    """Every dotted part of every module an ``import`` in ``tree`` names, at any depth
    (``from ..x import y`` gives x and y: y may be a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(part for alias in node.names for part in alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            names.update((node.module or "").split("."))
            names.update(alias.name for alias in node.names)
    return names


def test_imported_names_sees_every_form_of_import():
    tree = ast.parse("import a.heap\nfrom .._xla_cpu.fusion import g\nfrom . import _fusion\ndef f():\n    from x import y\n")
    assert {"heap", "_xla_cpu", "_fusion", "y"} <= imported_names(tree)


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_model_code_does_not_import_the_cpu_machinery(module):
    tree = ast.parse((SOURCE / module).read_text(), filename=module)
    assert not imported_names(tree) & CPU_MACHINERY


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the trainer supplies the boundaries on a CPU only")
def test_the_lm_trainer_gives_the_model_its_gradient_boundaries():
    # five loops a layer (test_lm_opt), none in the optimiser; a batch of 8 is one pass
    import optax
    from flax import nnx

    from jaxcollapse.lm.finetune import make_train_step
    from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional

    config = OPTConfig.preset("tiny", vocab_size=32)
    apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    optimizer = optax.adamw(1e-3)
    step = make_train_step(apply, optimizer, dropout=False)
    text = step.lower(params, optimizer.init(params), jnp.ones((8, 12), jnp.int32), jnp.ones(8),
                      jax.random.key(0)).as_text()
    assert text.count("stablehlo.while") == 5 * config.num_hidden_layers


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the trainer supplies the convolution on a CPU only")
def test_the_vae_trainer_gives_the_conv_model_its_cpu_transposed_convolution():
    from jaxcollapse import vae, vae_model, vae_train
    from jaxcollapse._xla_cpu.conv import doubling_conv_transpose

    config = vae.VAEConfig(image_shape=(8, 8), channels=(4, 6), latent=3)
    trainer = vae_train._trainer(config, vae.TrainConfig(epochs=1, batch_size=8), 8)
    state, epoch_keys = trainer.init(jax.random.key(0))
    order, step_keys = trainer.epoch_plan(epoch_keys[0], jnp.ones(8))
    step = jax.make_jaxpr(trainer.step)(state, jnp.zeros((8, 8, 8, 1)), jnp.ones(8), order, 0, step_keys[0])
    assert str(step).count("custom_vjp_call") == 2  # the decoder's two layers
    assert vae_model._model(config, state[0]).conv_transpose is None  # sampling and scoring: the plain model
    assert vae_train._conv_transpose(config) is doubling_conv_transpose


def test_the_training_names_stay_importable_from_jaxcollapse_vae():
    from jaxcollapse import vae, vae_train

    for name in ("train", "train_runs", "TRAIN_LOOPS", "vae_family"):
        assert getattr(vae, name) is getattr(vae_train, name)
    with pytest.raises(AttributeError):
        vae.no_such_name  # noqa: B018
