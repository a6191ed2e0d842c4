"""Language models in Flax NNX: an OPT decoder (:mod:`jaxcollapse.lm.opt`) and its Hugging Face
checkpoint IO (:mod:`jaxcollapse.lm.checkpoint`)."""
