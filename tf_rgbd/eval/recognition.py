"""Recognition evaluation of a trained run: embeddings of the protocol's split ->
identification per probe subset (rank-1, CMC) and verification (ROC, TAR@FAR, EER) per method
(RGB, depth, fused), written as ``recognition_metrics.json`` with pictures.

``training/evaluate_recognizer.py`` is its command-line wrapper.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from tf_rgbd import io_utils
from tf_rgbd.config.recognizer import METRICS_FILE, RecognizerEvalConfig
from tf_rgbd.data import pipeline
from tf_rgbd.data.modalities import (dataset_modalities, resolve_depth_key,
                                     resolve_depth_source, select_inputs)
from tf_rgbd.data.protocol import load_protocol, protocol_path
from tf_rgbd.eval import embeddings as embeddings_lib
from tf_rgbd.eval import plots
from tf_rgbd.metrics import identification, verification
from tf_rgbd.models.recognizer import build_inference_model
from tf_rgbd.training.recognizer_training import load_recognizer

METHOD_NAMES = {"rgb": "RGB", "depth": "Depth", "fused": "RGB-D (fused)"}


def evaluate_recognizer(config: RecognizerEvalConfig, recognizer=None, experiment=None,
                        progress: bool = True) -> dict:
    """Evaluates a trained run on a protocol; writes metrics JSON and pictures.

    Args:
      config: :class:`~tf_rgbd.config.recognizer.RecognizerEvalConfig`.
      recognizer, experiment: an already loaded model and its run config (else read from
        ``config.model_dir``).

    Returns:
      The metrics dict written to ``<output_dir>/recognition_metrics.json``: per method
      (rgb / depth / fused) rank-1 and CMC per probe subset and their average, verification
      (TAR at FAR, EER, AUC) over all gallery-probe pairs, the text tables, and the inputs used.
    """
    if recognizer is None:
        recognizer, experiment = load_recognizer(config.model_dir, experiment)
    image_size = experiment.model.image_size
    manifest = pipeline.read_manifest(config.data_dir)
    protocol = load_protocol(protocol_path(config.data_dir, config.protocol))
    modalities = recognizer.modalities
    depth_source = resolve_depth_source(manifest, protocol.split, config.depth_source)
    depth_key = (resolve_depth_key(manifest, protocol.split, depth_source)
                 if "depth" in modalities else "depth")
    output_dir = config.output_dir or os.path.join(
        config.model_dir, f"eval_{config.protocol}_{depth_source}")
    os.makedirs(output_dir, exist_ok=True)

    def batches():
        return pipeline.make_dataset(config.data_dir, split=protocol.split,
                                     batch_size=config.batch_size, image_size=image_size,
                                     modalities=dataset_modalities(modalities, depth_key),
                                     with_metadata=True, deterministic=True,
                                     zero_fill=experiment.zero_fill_missing)

    inference = build_inference_model(recognizer, image_size, with_attention=recognizer.uses_mask)
    split_count = manifest["splits"][protocol.split]["example_count"]
    embedded = embeddings_lib.extract_embeddings(
        inference, batches(), modalities, depth_key, config.flip_test, progress,
        total_batches=-(-split_count // config.batch_size))
    spread = embeddings_lib.embedding_spread(embedded.features)
    collapsed = embeddings_lib.collapsed_branches(spread)
    if collapsed:
        logging.warning("%s: the %s embeddings are (nearly) constant over the %s split (mean "
                        "per-dimension std %s < %g): the model collapsed, every score ties and "
                        "its rank-1 / EER measure nothing", config.model_dir, collapsed,
                        protocol.split, {b: f"{spread[b]:.2g}" for b in collapsed},
                        embeddings_lib.COLLAPSE_SPREAD)
    scored = score_protocol(embedded, protocol, config.max_rank)
    gallery, all_probes, all_scores = scored["gallery"], scored["all_probes"], scored["all_scores"]
    identification_results, overall = scored["per_subset"], scored["overall"]
    verification_results = scored["verification"]

    subsets = list(protocol.probes)
    rows = {}
    for method, per_subset in identification_results.items():
        rows[METHOD_NAMES.get(method, method)] = {
            **{subset: result.rank1 for subset, result in per_subset.items()},
            "average": identification.average_rank1(per_subset, protocol.report_only)}
    identification_table = identification.format_identification_table(
        rows, subsets, title=f"rank-1 % ({depth_source} depth)")
    verification_table = verification.format_verification_table(
        {METHOD_NAMES.get(method, method): result
         for method, result in verification_results.items()})

    metrics = {
        "protocol": protocol.name,
        "data_dir": os.path.abspath(config.data_dir),
        "model_dir": os.path.abspath(config.model_dir),
        "depth_source": depth_source,
        "depth_input_key": depth_key,
        "modalities": list(modalities),
        "variant": experiment.variant,
        "flip_test": config.flip_test,
        "embedding_spread": spread,
        "collapsed_branches": collapsed,
        "num_gallery": len(gallery),
        "num_probes": {subset: len(ids) for subset, ids in protocol.probes.items()},
        "averaged_subsets": list(protocol.averaged_subsets()),
        "report_only_subsets": list(protocol.report_only),
        "identification": {
            method: {"subsets": {subset: result.to_dict() for subset, result in per_subset.items()},
                     "average_rank1": identification.average_rank1(per_subset,
                                                                   protocol.report_only),
                     "all_probes": overall[method].to_dict()}
            for method, per_subset in identification_results.items()},
        "verification": {method: result.to_dict()
                         for method, result in verification_results.items()},
        "tables": {"identification": identification_table, "verification": verification_table},
    }

    if config.make_plots:
        primary = "fused" if "fused" in identification_results else modalities[0]
        pictures = {
            "cmc_methods": plots.plot_cmc(
                {METHOD_NAMES.get(m, m): overall[m].cmc for m in overall},
                os.path.join(output_dir, "cmc_methods.png"), "CMC, all probes"),
            "cmc_subsets": plots.plot_cmc(
                {subset: result.cmc for subset, result in identification_results[primary].items()},
                os.path.join(output_dir, "cmc_subsets.png"),
                f"CMC per subset ({METHOD_NAMES.get(primary, primary)})"),
        }
        roc_curves = {}
        for method, scores in all_scores.items():
            genuine, impostor = verification.pair_scores(scores, all_probes.labels,
                                                         gallery.labels)
            far, tar, _ = verification.roc_curve(genuine, impostor)
            roc_curves[METHOD_NAMES.get(method, method)] = (far, tar)
        pictures["roc"] = plots.plot_roc(roc_curves, os.path.join(output_dir, "roc.png"))
        tsne_branch = "rgb" if "rgb" in embedded.features else "depth"
        try:
            pictures["tsne"] = plots.plot_tsne(
                embedded.features[tsne_branch], embedded.labels,
                os.path.join(output_dir, "tsne.png"), config.tsne_identities,
                title=f"t-SNE of f_id ({METHOD_NAMES[tsne_branch]}), "
                      f"{config.tsne_identities} identities")
        except ValueError as error:
            logging.warning("t-SNE skipped: %s", error)
        if recognizer.uses_mask and config.attention_examples > 0:
            pictures["attention"] = _attention_picture(
                inference, batches(), modalities, depth_key,
                _spread_probe_ids(protocol, config.attention_examples),
                os.path.join(output_dir, "attention.png"))
        metrics["pictures"] = {key: os.path.basename(path) for key, path in pictures.items()}

    io_utils.atomic_write_json(os.path.join(output_dir, METRICS_FILE), metrics)
    metrics["output_dir"] = output_dir
    summary = ", ".join(f"{METHOD_NAMES.get(method, method)} rank-1 "
                        f"{100 * identification.average_rank1(per_subset, protocol.report_only):.2f}%"
                        for method, per_subset in identification_results.items())
    logging.info("evaluated %s on %s/%s (%s depth): %s -> %s", config.model_dir,
                 protocol.name, protocol.split, depth_source, summary, output_dir)
    return metrics


def score_protocol(embedded: embeddings_lib.EmbeddingSet, protocol, max_rank: int = 10) -> dict:
    """Identification per probe subset, and the pooled all-probe identification and
    verification, of embeddings against a protocol's gallery.

    The pooled probes are the averaged subsets only (``protocol.all_probe_ids()``): a
    report-only subset (Lock3DFace's ``neutral``) is scored on its own and nowhere else.

    Returns ``{"gallery", "all_probes": EmbeddingSet, "per_subset": {method: {subset:
    IdentificationResult}}, "overall": {method: IdentificationResult}, "all_scores": {method:
    [P, G]}, "verification": {method: VerificationResult}}``.
    """
    gallery = embedded.select(protocol.gallery, "gallery")
    per_subset: dict = {}
    for subset, probe_ids in protocol.probes.items():
        probes = embedded.select(probe_ids, f"probe subset {subset!r}")
        for method, scores in embeddings_lib.similarity_scores(probes, gallery).items():
            per_subset.setdefault(method, {})[subset] = identification.identify(
                scores, probes.labels, gallery.labels, max_rank)
    all_probes = embedded.select(protocol.all_probe_ids(), "all probes")
    all_scores = embeddings_lib.similarity_scores(all_probes, gallery)
    overall = {method: identification.identify(scores, all_probes.labels, gallery.labels,
                                               max_rank)
               for method, scores in all_scores.items()}
    verification_results = {method: verification.verify(scores, all_probes.labels,
                                                        gallery.labels)
                            for method, scores in all_scores.items()}
    return {"gallery": gallery, "all_probes": all_probes, "per_subset": per_subset,
            "overall": overall, "all_scores": all_scores, "verification": verification_results}


def _spread_probe_ids(protocol, count: int) -> list:
    """Up to ``count`` probe ids taken round-robin from the subsets (one face per subset first)."""
    chosen, subsets = [], [list(ids) for ids in protocol.probes.values()]
    index = 0
    while len(chosen) < count and any(index < len(ids) for ids in subsets):
        for ids in subsets:
            if index < len(ids) and len(chosen) < count and ids[index] not in chosen:
                chosen.append(ids[index])
        index += 1
    return chosen


def _attention_picture(inference, batches, modalities, depth_key, example_ids, path: str
                       ) -> Optional[str]:
    wanted = set(example_ids)
    found: dict = {}
    for batch in batches:
        ids = [value.decode() for value in np.asarray(batch["example_id"])]
        rows = [row for row, example_id in enumerate(ids) if example_id in wanted]
        if not rows:
            continue
        outputs = inference(select_inputs(batch, modalities, depth_key), training=False)
        for row in rows:
            found[ids[row]] = (
                np.asarray(batch["rgb"][row]) if "rgb" in batch
                else np.repeat(np.asarray(batch[depth_key][row]) * 2.0 - 1.0, 3, axis=-1),
                {key: np.asarray(value[row]) for key, value in outputs.items()
                 if key.startswith("attention_")})
        if len(found) == len(wanted):
            break
    ordered = [example_id for example_id in example_ids if example_id in found]
    if not ordered:
        return None
    rgb = np.stack([found[example_id][0] for example_id in ordered])
    attention = {key: np.stack([found[example_id][1][key] for example_id in ordered])
                 for key in found[ordered[0]][1]}
    return plots.plot_attention_overlays(rgb, attention, path, captions=ordered)
