"""Experiment orchestration ("train these, then evaluate them"), the top of the library:
:mod:`~tf_rgbd.experiments.recognizer_variants` (recognizer ablation rows); the related
methods' experiments live beside it, one module each."""
from tf_rgbd.experiments.recognizer_variants import (VARIANTS_SUMMARY_FILE,  # noqa: F401
                                                     train_then_evaluate)
