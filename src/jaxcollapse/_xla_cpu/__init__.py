"""What jaxcollapse knows about XLA:CPU, in one room: the only package that does.

Every module here makes a program run faster on XLA:CPU and changes no result. Model code
(:mod:`jaxcollapse.vae`, :mod:`jaxcollapse.lm.opt`) does not import it: a model takes
these functions as hooks (the OPT decoder's ``boundary``, the conv VAE's
``conv_transpose``), identity or plain JAX by default, and the trainers and runners that
drive compiled steps on a CPU (:mod:`jaxcollapse.vae_train`,
:mod:`jaxcollapse.lm.finetune`, the ``*_runs`` modules, the engine) supply them.

* :mod:`~jaxcollapse._xla_cpu.heap`: glibc's allocator kept from unmapping freed memory
  while compiled CPU programs run (``keep_freed_memory``), and programs run on the calling
  thread (``run_cpu_programs_inline``); public as :mod:`jaxcollapse.heap`.
* :mod:`~jaxcollapse._xla_cpu.fusion`: fusion boundaries XLA:CPU keeps (``materialize``,
  ``gradient_boundary``), an ordering edge it keeps (``after``), and a batch's gradient
  computed in chunks a few at a time (``value_and_grad_in_lanes``).
* :mod:`~jaxcollapse._xla_cpu.conv`: a stride-2 transposed convolution computed and
  differentiated as the transpose of a strided convolution (``doubling_conv_transpose``),
  and the compiler options of a convolution-heavy training step, with the probe of
  whether this XLA accepts them (``accepted_compiler_options``).

The package's ``__init__`` imports none of them, so that :mod:`jaxcollapse.heap` stays free
of JAX until a program runs.
"""
