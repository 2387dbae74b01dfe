"""Evaluation runs: trained models over datasets and protocols -> metrics JSON, tables, pictures.

Modules: :mod:`~tf_rgbd.eval.recognition` (a recognizer run on a protocol),
:mod:`~tf_rgbd.eval.embeddings` (extraction, flip test, score fusion),
:mod:`~tf_rgbd.eval.depth` (depth generators and the mean-face baseline), :mod:`~tf_rgbd.eval.plots`.
The metric functions themselves are in :mod:`tf_rgbd.metrics`.
"""
