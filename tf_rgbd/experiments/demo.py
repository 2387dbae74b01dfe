"""``make demo``: the whole system end to end, as resumable stages, ending in a report.

    summary = run_demo(DemoConfig(output_dir="runs/demo"))

Stages (:data:`STAGES`, in order): build the synthetic RGB-D dataset -> train DepthNet and the
cGAN baseline -> depth table against the mean face and the cGAN on one common support ->
augment the 2D split to RGB-D (D*, M*) -> train the recognizer (all losses) and the RGB
baseline -> identification per probe subset and verification, with D* and with Dgt -> export
the ``pipeline`` graph behind its parity gates -> latency table -> enrol the test identities'
gallery images in a SQLite gallery through the deployed artefact and identify the probes
through it (rank-1 checked against the Keras evaluation's) -> the related methods' headline
rows (a hook: read when their results JSON exists; last before the report, so that results
arriving later redo only these two stages) -> ``report.html`` /
``report.md`` / ``metrics.json`` (:mod:`tf_rgbd.experiments.report`).

Each stage writes ``<output_dir>/stages/<name>.json`` (its result, its outputs, its time) when
it finishes. A stage is skipped when that record exists and its outputs still exist and parse;
once a stage runs, every later stage runs again (their inputs changed). An interrupted demo
therefore continues with the stage it was in (training stages also resume from their
checkpoints). A progress line per stage gives its time, the elapsed time and an estimate of
what is left. ``<output_dir>/demo_config.json`` pins the config: a demo directory made with
other sizes is refused rather than mixed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.demo import GALLERY_FORMATS, DemoConfig

PROTOCOL = "lock3dface_style"
CONFIG_FILE = "demo_config.json"
STAGES_DIR = "stages"
FIGURES_DIR = "figures"
METRICS_FILE = "metrics.json"
DEPTHNET, CGAN = "DepthNet", "cGAN (Pini et al.)"
DEPTH_METHODS = {DEPTHNET: ("depthnet", {"arch": "depthnet"}),
                 CGAN: ("cgan", {"arch": "cgan", "norm": "batch"})}
VARIANTS = ("full", "rgb_baseline")
# (variant, depth source) evaluations; the RGB baseline has no depth branch.
EVALUATIONS = (("full", "generated"), ("full", "gt"), ("rgb_baseline", "generated"))
# Evaluations drawn (CMC, t-SNE, attention) and ROC curves per evaluation (each one more
# embedding pass; the others are tables only, to keep the demo within its budget).
PLOTTED = ("full/generated",)
ROC_CURVES = {"full/generated": ("fused", "rgb", "depth")}
GALLERY_TOP_K = 3


class DemoConfigMismatch(ValueError):
    """The output directory holds a demo made with another config."""


@dataclasses.dataclass
class DemoContext:
    """What the stages share: the config, paths, earlier stages' results and the log."""

    config: DemoConfig
    output_dir: str
    results: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print

    def path(self, *parts: str) -> str:
        return os.path.join(self.output_dir, *parts)

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.output_dir)

    @property
    def data_dir(self) -> str:
        return self.path("synthetic")

    @property
    def generated_dir(self) -> str:
        return self.path("generated")

    @property
    def export_dir(self) -> str:
        return self.path("export")

    def run_dir(self, variant: str) -> str:
        return self.path("recognizer", variant)

    def figure(self, name: str) -> str:
        return self.path(FIGURES_DIR, name)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the demo.

    Attributes:
      name: file stem of its record (``stages/<name>.json``).
      title: what the progress line and the report call it.
      run: ``run(context) -> result`` (JSON-able; ``outputs``: paths relative to the output
        directory that must exist for the stage to count as done; ``watch``: paths whose
        existence, when it changes, makes the stage run again).
      weight: expected share of a default run's time (for the estimate of what is left).
    """

    name: str
    title: str
    run: Callable[[DemoContext], dict]
    weight: float


# ------------------------------------------------------------------ stages

def stage_dataset(context: DemoContext) -> dict:
    """The synthetic RGB-D dataset (shards, manifest, protocol) and its preview figure."""
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset
    from tf_rgbd.data.protocol import load_protocol, protocol_path

    config = context.config
    manifest = build_dataset(BuildConfig(
        source="synthetic", output_dir=context.data_dir, image_size=config.data_image_size,
        num_identities=config.num_identities, images_per_identity=config.images_per_identity,
        test_fraction=config.test_fraction, num_workers=config.num_workers, seed=config.seed,
        num_shards=4), progress=False)
    protocol = load_protocol(protocol_path(context.data_dir, PROTOCOL))
    # Two test subjects: the gallery face, then one probe of every subset.
    columns = []
    for gallery_id in protocol.gallery[:2]:
        subject = _subject_of(gallery_id)
        columns.append(gallery_id)
        for probe_ids in protocol.probes.values():
            same = [i for i in probe_ids if _subject_of(i) == subject]
            if same:
                columns.append(same[0])
    examples = _read_examples(context.data_dir, protocol.split, columns,
                              config.data_image_size, ("rgb", "depth", "mask"))
    from tf_rgbd.experiments import demo_figures
    preview = demo_figures.plot_dataset_preview(
        [examples[i] for i in columns if i in examples], context.figure("dataset_preview.png"))
    splits = {split: entry["example_count"] for split, entry in manifest["splits"].items()}
    return {
        "data_dir": context.data_dir, "splits": splits,
        "test_identities": len(protocol.gallery),
        "protocol": {"name": protocol.name, "split": protocol.split,
                     "gallery": len(protocol.gallery),
                     "probes": {subset: len(ids) for subset, ids in protocol.probes.items()},
                     "description": protocol.description},
        "build_seconds": manifest.get("extra", {}).get("build_seconds"),
        "figures": {"dataset_preview": context.relative(preview)},
        "outputs": ["synthetic/manifest.json", f"synthetic/protocols/{PROTOCOL}.json",
                    context.relative(preview)]}


def _subject_of(example_id: str) -> str:
    """The subject part of a synthetic example id (``synthetic/id0036/img0003``)."""
    return example_id.rsplit("/", 1)[0]


def _read_examples(data_dir: str, split: str, example_ids: Sequence[str], image_size: int,
                   modalities: Sequence[str]) -> dict:
    """example id -> dict of numpy arrays and decoded metadata, for a few examples."""
    from tf_rgbd.data import pipeline
    batches = pipeline.make_dataset(data_dir, split, batch_size=64, image_size=image_size,
                                    modalities=tuple(modalities), with_metadata=True,
                                    deterministic=True, example_ids=list(example_ids))
    found = {}
    for batch in batches.as_numpy_iterator():
        for row, raw in enumerate(batch["example_id"]):
            found[raw.decode()] = {key: (value[row].decode() if isinstance(value[row], bytes)
                                         else value[row]) for key, value in batch.items()}
    return found


def _depth_training_config(context: DemoContext, model_dir: str, overrides: Mapping):
    from tf_rgbd.config.depthnet import DepthModelConfig, DepthTrainingConfig, OptimizerConfig
    from tf_rgbd.config.run import RunConfig

    config = context.config
    return DepthTrainingConfig(
        model=DepthModelConfig(image_size=config.image_size,
                               base_filters=config.depth_base_filters,
                               discriminator_filters=max(4, config.depth_base_filters),
                               discriminator_downsamples=3 if config.image_size >= 32 else 1,
                               **overrides),
        optimizer=OptimizerConfig(learning_rate=config.depth_learning_rate),
        run=RunConfig(data_dir=context.data_dir, model_dir=model_dir, val_split="",
                      batch_size=config.depth_batch_size, steps=config.depth_steps,
                      steps_per_epoch=max(1, config.depth_steps // 4),
                      checkpoint_every_steps=max(1, config.depth_steps // 4),
                      image_grid_every_epochs=0, seed=config.seed, verbose="0",
                      run_eagerly=config.run_eagerly))


def stage_depth_models(context: DemoContext) -> dict:
    """DepthNet (segmentation-aware depth GAN) and the cGAN baseline, same data and budget."""
    from tf_rgbd.training.depth_training import train_depth_model

    trained = {}
    for method, (folder, overrides) in DEPTH_METHODS.items():
        started = time.time()
        result = train_depth_model(_depth_training_config(
            context, context.path("depth", folder), overrides))
        trained[method] = {"generator": context.relative(result.outputs["generator"]),
                           "model_dir": context.relative(result.model_dir),
                           "steps": result.final_step,
                           "seconds": round(time.time() - started, 1)}
        context.log(f"  {method}: {result.final_step} steps in {trained[method]['seconds']} s")
    return {"models": trained, "outputs": [entry["generator"] for entry in trained.values()]}


def stage_depth_table(context: DemoContext) -> dict:
    """Depth and mask metrics of both generators and the mean face on one common support, and
    a picture of their predictions beside the ground truth."""
    from tf_rgbd.data.protocol import load_protocol, protocol_path
    from tf_rgbd.eval import depth as depth_eval
    from tf_rgbd.experiments import demo_figures
    from tf_rgbd.models.loading import load_depth_generator

    config = context.config
    models = context.results["depth_models"]["models"]
    generators = {method: load_depth_generator(context.path(entry["generator"]))
                  for method, entry in models.items()}
    results = depth_eval.evaluate_depth_models(
        context.data_dir, {method: depth_eval.generator_predictor(generator)
                           for method, generator in generators.items()},
        image_size=config.image_size, batch_size=32)
    path = context.path("depth", depth_eval.DEPTH_METRICS_FILE)
    io_utils.atomic_write_json(path, results)
    table = depth_eval.format_depth_table(results)
    context.log(table)

    protocol = load_protocol(protocol_path(context.data_dir, PROTOCOL))
    chosen = [protocol.gallery[0]] + [ids[0] for ids in list(protocol.probes.values())[:3]]
    examples = _read_examples(context.data_dir, protocol.split, chosen, config.image_size,
                              ("rgb", "depth", "mask"))
    rows = []
    for example_id in [i for i in chosen if i in examples]:
        example = examples[example_id]
        row = {"rgb": example["rgb"], "depth": example["depth"], "mask": example["mask"],
               "caption": example_id}
        for method, generator in generators.items():
            predictor = depth_eval.generator_predictor(generator, mask_background=True)
            outputs = predictor({"rgb": example["rgb"][None]})
            row[f"{method}/depth"] = np.asarray(outputs["depth"])[0]
            if "mask" in outputs:
                row[f"{method}/mask"] = np.asarray(outputs["mask"])[0]
        rows.append(row)
    picture = demo_figures.plot_depth_predictions(rows, list(generators),
                                                  context.figure("depth_predictions.png"))
    return {"metrics": results, "table": table, "figures": {
                "depth_predictions": context.relative(picture)},
            "outputs": [context.relative(path), context.relative(picture)]}


def stage_augment(context: DemoContext) -> dict:
    """The 2D split turned RGB-D by DepthNet: RGB (background removed by M*), D*, M*, with the
    ground-truth depth kept beside D*."""
    from tf_rgbd.augmentation.generated_rgbd import augment_dataset
    from tf_rgbd.models.loading import load_depth_generator

    generator_path = context.path(context.results["depth_models"]["models"][DEPTHNET]
                                  ["generator"])
    manifest, stats = augment_dataset(load_depth_generator(generator_path), context.data_dir,
                                      context.generated_dir, keep_gt_depth=True,
                                      generator_path=generator_path, progress=False)
    stats_dict = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(stats)
    return {"data_dir": context.generated_dir, "examples": manifest["example_count"],
            "stats": stats_dict, "outputs": ["generated/manifest.json"]}


def _decay_epochs(epochs: int) -> tuple[int, ...]:
    """lr x0.1 at 50 % and 80 % of ``epochs`` (as the claims benchmark; epochs inside the run
    only). The paper's 6/10/17-of-20 left a 10-epoch demo 3 epochs at the full rate."""
    return tuple(sorted({round(epochs * fraction) for fraction in (0.5, 0.8)}
                        & set(range(1, epochs))))


def recognizer_experiment(context: DemoContext, variant: str):
    """The run config of ``variant`` (``full``: RGB + D* + M*, all four losses;
    ``rgb_baseline``: the RGB branch, classification loss)."""
    from tf_rgbd.config import recognizer as recognizer_config
    from tf_rgbd.config.run import RunConfig

    config = context.config
    base = recognizer_config.RecognizerExperimentConfig(
        model=recognizer_config.RecognizerModelConfig(
            backbone="tiny", image_size=config.image_size, embedding_dim=config.embedding_dim,
            dropout_rate=config.recognizer_dropout_rate),
        optimizer=recognizer_config.SGDConfig(
            learning_rate=config.recognizer_learning_rate,
            lr_decay_epochs=_decay_epochs(config.recognizer_epochs)),
        run=RunConfig(data_dir=context.generated_dir, batch_size=config.recognizer_batch_size,
                      augment=config.recognizer_augment,
                      epochs=config.recognizer_epochs,
                      steps_per_epoch=config.recognizer_steps_per_epoch,
                      checkpoint_every_steps=max(1, config.recognizer_steps_per_epoch),
                      image_grid_every_epochs=0, seed=config.seed, verbose="0",
                      run_eagerly=config.run_eagerly),
        depth_source="generated")
    return recognizer_config.with_model_dir(recognizer_config.apply_variant(base, variant),
                                            context.run_dir(variant))


def stage_recognizers(context: DemoContext) -> dict:
    """The segmentation-guided recognizer (all losses) and the RGB baseline."""
    from tf_rgbd.config.recognizer import RECOGNIZER_FILE
    from tf_rgbd.training.recognizer_training import run_training

    runs = {}
    for variant in VARIANTS:
        experiment = recognizer_experiment(context, variant)
        summary = run_training(experiment)
        runs[variant] = {
            "model_dir": context.relative(experiment.run.model_dir),
            "modalities": list(experiment.model.modalities),
            "losses": list(experiment.loss.losses),
            "steps": summary.get("total_steps"), "seconds": summary.get("seconds")}
        context.log(f"  {variant}: {summary.get('total_steps')} steps")
    return {"runs": runs, "outputs": [os.path.join(entry["model_dir"], RECOGNIZER_FILE)
                                      for entry in runs.values()]}


def _roc_of_run(data_dir: str, model_dir: str, depth_source: str) -> dict:
    """ROC points (far, tar) per score method of one run on the protocol's pooled probes."""
    from tf_rgbd.data import pipeline
    from tf_rgbd.data.modalities import (dataset_modalities, resolve_depth_key,
                                         resolve_depth_source)
    from tf_rgbd.data.protocol import load_protocol, protocol_path
    from tf_rgbd.eval import embeddings as embeddings_lib
    from tf_rgbd.eval import recognition
    from tf_rgbd.metrics import verification
    from tf_rgbd.models.recognizer import build_inference_model
    from tf_rgbd.training.recognizer_training import load_recognizer

    recognizer, experiment = load_recognizer(model_dir)
    manifest = pipeline.read_manifest(data_dir)
    protocol = load_protocol(protocol_path(data_dir, PROTOCOL))
    modalities = recognizer.modalities
    source = resolve_depth_source(manifest, protocol.split, depth_source)
    depth_key = (resolve_depth_key(manifest, protocol.split, source)
                 if "depth" in modalities else "depth")
    batches = pipeline.make_dataset(
        data_dir, split=protocol.split, batch_size=64, image_size=experiment.model.image_size,
        modalities=dataset_modalities(modalities, depth_key), with_metadata=True,
        deterministic=True, zero_fill=experiment.zero_fill_missing)
    inference = build_inference_model(recognizer, experiment.model.image_size)
    embedded = embeddings_lib.extract_embeddings(inference, batches, modalities, depth_key,
                                                 flip_test=True, progress=False)
    scored = recognition.score_protocol(embedded, protocol)
    curves = {}
    for method, scores in scored["all_scores"].items():
        genuine, impostor = verification.pair_scores(scores, scored["all_probes"].labels,
                                                     scored["gallery"].labels)
        far, tar, _ = verification.roc_curve(genuine, impostor)
        curves[method] = (far, tar)
    return curves


def stage_recognition(context: DemoContext) -> dict:
    """Identification per probe subset and verification of both runs, the full model with D*
    and with Dgt; CMC / t-SNE / attention pictures (tf_rgbd.eval) and ROC with TAR@FAR."""
    from tf_rgbd.config.recognizer import METRICS_FILE as EVAL_METRICS_FILE
    from tf_rgbd.config.recognizer import RecognizerEvalConfig
    from tf_rgbd.eval import recognition
    from tf_rgbd.experiments import demo_figures

    evaluations, outputs, figures = {}, [], {}
    curves, marks = {}, {}
    for variant, source in EVALUATIONS:
        key = f"{variant}/{source}"
        output_dir = context.path("recognition", f"{variant}_{source}")
        metrics = recognition.evaluate_recognizer(RecognizerEvalConfig(
            data_dir=context.generated_dir, model_dir=context.run_dir(variant),
            protocol=PROTOCOL, depth_source=source, output_dir=output_dir,
            tsne_identities=10, attention_examples=4, make_plots=key in PLOTTED),
            progress=False)
        metrics.pop("output_dir", None)
        evaluations[key] = {name: value for name, value in metrics.items()}
        outputs.append(context.relative(os.path.join(output_dir, EVAL_METRICS_FILE)))
        for picture, file_name in (metrics.get("pictures") or {}).items():
            figures[f"{key}:{picture}"] = context.relative(os.path.join(output_dir, file_name))
        context.log(metrics["tables"]["identification"])
        if key not in ROC_CURVES:
            continue
        run_curves = _roc_of_run(context.generated_dir, context.run_dir(variant), source)
        depth_note = {"generated": "D*", "gt": "Dgt"}[source]
        for method in ROC_CURVES[key]:
            if method not in run_curves:
                continue
            label = (f"{variant}: {recognition.METHOD_NAMES.get(method, method)}"
                     + (f", {depth_note}" if variant == "full" else ""))
            curves[label] = run_curves[method]
            marks[label] = {far: tar for far, tar in metrics["verification"][method]
                            ["tar_at_far"].items() if far in ("0.01", "0.1")}
    roc = demo_figures.plot_roc_marked(curves, marks, context.figure("roc.png"),
                                       "ROC over all gallery x probe pairs")
    figures["roc"] = context.relative(roc)
    outputs.append(context.relative(roc))
    return {"evaluations": evaluations, "figures": figures, "outputs": outputs}


def related_results_path(context: DemoContext) -> str:
    return context.config.related_results or context.path("related", "results.json")


def stage_related_methods(context: DemoContext) -> dict:
    """The related methods' tables. This stage trains nothing; it reads the tables that
    ``python -m bench.related_methods`` writes (``{"methods": {method: {"tables": ...}}}``),
    or headline rows (``related_results``: ``{"rows": [{"method": ...,
    <metric>: value, ...}], "source": "..."}``) when that file exists, and says so when it
    does not. No row is ever made up here."""
    path = related_results_path(context)
    if not os.path.isfile(path):
        return {"status": "not wired", "path": path, "rows": [],
                "note": f"no related-methods results at {path}: run `python -m "
                        "bench.related_methods` (3 seeds of the joint reconstruction, DMFR and "
                        "depth-identity methods, ~30 min) and re-run the demo, which then "
                        "redoes only this stage and the report", "outputs": [],
                "watch": [path]}
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if isinstance(payload, Mapping) and isinstance(payload.get("methods"), Mapping):
        # bench/related_methods.py's results: every method's paper-style tables.
        tables = [{"title": f"{method}: {title}", "rows": list(rows)}
                  for method, result in payload["methods"].items()
                  for title, rows in result.get("tables", {}).items()]
        return {"status": "read", "path": path, "rows": [], "tables": tables,
                "source": f"({payload.get('command', 'python -m bench.related_methods')}, "
                          f"measured {payload.get('measured_at', '?')}, seeds "
                          f"{payload.get('config', {}).get('seeds', '?')})",
                "outputs": [], "watch": [path]}
    rows = payload.get("rows") if isinstance(payload, Mapping) else payload
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise ValueError(f"{path}: expected {{\"rows\": [{{\"method\": ..., metric: value}}]}}; "
                         "fix the related-methods results file or remove it")
    return {"status": "read", "path": path, "rows": rows,
            "source": payload.get("source", "") if isinstance(payload, Mapping) else "",
            "outputs": [], "watch": [path]}


def stage_export(context: DemoContext) -> dict:
    """The ``pipeline`` graph (rgb -> DepthNet -> augmentation transform -> recognizer) of the
    full run in every configured format, each behind its parity gate (failing artefacts are
    removed by the export and reported here with their figures)."""
    from tf_rgbd.config.export import ExportConfig
    from tf_rgbd.deploy import export as export_lib

    config = context.config
    summary = export_lib.export_run(ExportConfig(
        run_dir=context.run_dir("full"), graph="pipeline", formats=config.export_formats,
        output_dir=context.export_dir, calibration_samples=config.calibration_samples,
        parity_samples=config.parity_samples, batch_size=32), log=context.log)
    parity_record = export_lib.read_json(
        os.path.join(context.export_dir, export_lib.PARITY_FILE), {}) or {}
    manifest = export_lib.load_manifest(context.export_dir)
    rows = []
    for entry in parity_record.get("results", []):
        outputs = entry.get("outputs") or {}
        cosines = [value["mean_cosine"] for value in outputs.values() if "mean_cosine" in value]
        rank1 = entry.get("rank1") or {}
        artefact = manifest["artefacts"].get(entry["artefact"]) or {}
        rows.append({
            "artefact": entry["artefact"], "format": entry.get("format"),
            "gate": entry.get("gate"), "passed": bool(entry.get("passed")),
            "reference": bool(entry.get("reference")),
            "max_abs": max((value["max_abs"] for value in outputs.values()), default=None),
            "min_mean_cosine": min(cosines) if cosines else None,
            "rank1_keras": rank1.get("keras"), "rank1_artefact": rank1.get("artefact"),
            "latency_ms_batch1": entry.get("latency_ms_batch1"),
            "size_bytes": artefact.get("size_bytes"),
            "examples": entry.get("examples"),
            "failures": list(entry.get("failures") or [])})
    return {"export_dir": context.export_dir, "passed": bool(summary.get("passed")),
            "formats": list(config.export_formats), "parity": rows,
            "removed": sorted(manifest.get("removed") or {}),
            "skipped": dict(manifest.get("skipped") or {}),
            "gates": parity_record.get("gates", {}),
            "outputs": ["export/manifest.json", "export/parity.json"]}


def stage_latency(context: DemoContext) -> dict:
    """p50 / p90 latency and throughput of every exported artefact against the Keras graph
    (``tf_rgbd.deploy.latency``, as bench/inference_latency.py measures it)."""
    from tf_rgbd.benchmarks import machine_facts
    from tf_rgbd.config.bench import InferenceLatencyConfig
    from tf_rgbd.deploy import export as export_lib
    from tf_rgbd.deploy import latency

    config = context.config
    settings = InferenceLatencyConfig(
        export_dir=context.export_dir, graphs=("pipeline",),
        batch_sizes=tuple(config.latency_batch_sizes), repeats=max(3, config.latency_repeats),
        warmup_runs=1, max_seconds_per_case=10.0)
    load_before = os.getloadavg()
    # keras_eager (InferenceSession's eager call, ~1 s per call here) is left to the bench.
    exported = {entry["format"] for entry in export_lib.load_manifest(
        context.export_dir)["artefacts"].values()}
    excluded = {"keras_eager"} | ({fmt for fmt in exported if fmt != "keras"
                                   and fmt not in config.latency_formats}
                                  if config.latency_formats else set())
    rows = latency.measure_export(context.export_dir, settings, log=context.log,
                                  exclude=tuple(sorted(excluded)))
    table = latency.format_latency_table(rows)
    context.log(table)
    path = context.path("export", "latency.json")
    payload = {"rows": rows, "table": table, "machine": machine_facts(),
               "load_average_before": list(load_before),
               "load_average_after": list(os.getloadavg()),
               "batch_sizes": list(settings.batch_sizes), "repeats": settings.repeats}
    io_utils.atomic_write_json(path, payload)
    return {**payload, "outputs": [context.relative(path)]}


def _gallery_format(manifest: Mapping) -> str:
    artefacts = manifest.get("artefacts") or {}
    for fmt in GALLERY_FORMATS:
        entry = artefacts.get(f"pipeline/{fmt}")
        if entry and (fmt == "keras" or (entry.get("parity") or {}).get("passed")):
            return fmt
    raise ValueError("the export holds no pipeline artefact that passed its gate; see "
                     "export/parity.json")


def stage_gallery(context: DemoContext) -> dict:
    """The test identities' gallery images enrolled in a SQLite gallery through the deployed
    artefact, every probe identified through it; its rank-1 is checked against the Keras
    evaluation's (D*, fused) within the int8 rank-1 gate."""
    from tf_rgbd.config.export import INT8_MAX_RANK1_DROP_POINTS
    from tf_rgbd.data import pipeline
    from tf_rgbd.data.protocol import load_protocol, protocol_path
    from tf_rgbd.deploy import gallery as gallery_lib
    from tf_rgbd.deploy.face_recognizer import ExportDirectory
    from tf_rgbd.experiments import demo_figures

    config = context.config
    export = ExportDirectory(context.export_dir)
    fmt = _gallery_format(export.manifest)
    entry = export.find("pipeline", fmt)
    session = export.session(entry)
    input_size = int(session.input_specs["rgb"].shape[1])
    rgb_dir = (export.manifest.get("source") or {}).get("rgb_data_dir") or context.data_dir
    protocol = load_protocol(protocol_path(rgb_dir, PROTOCOL))
    outputs = [name for name in gallery_lib.EMBEDDING_OUTPUTS if name in session.output_names]

    started = time.time()
    embeddings, subjects, images = {}, {}, {}
    batches = pipeline.make_dataset(rgb_dir, split=protocol.split, batch_size=32,
                                    image_size=input_size, modalities=("rgb",),
                                    with_metadata=True, deterministic=True)
    for batch in batches.as_numpy_iterator():
        result = session.run({"rgb": batch["rgb"]})
        for row, raw in enumerate(batch["example_id"]):
            example_id = raw.decode()
            embeddings[example_id] = {name: np.asarray(result[name][row], np.float32)
                                      for name in outputs}
            subjects[example_id] = batch["subject"][row].decode()
            images[example_id] = batch["rgb"][row]
    embed_seconds = time.time() - started

    database = context.path("gallery", "gallery.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database + suffix):
            os.remove(database + suffix)
    identity = gallery_lib.ModelIdentity(
        entry["sha256"], {name: int(session.output_specs[name].shape[-1]) for name in outputs},
        f"{export.path_of(entry)} (pipeline, {fmt})")
    started = time.time()
    with gallery_lib.Gallery(database, identity) as gallery:
        for example_id in protocol.gallery:
            gallery.enroll(subjects[example_id], [gallery_lib.EnrolledFace(
                f"{rgb_dir}#{example_id}", embeddings[example_id])])
        enrol_seconds = time.time() - started
        started = time.time()
        probe_ids = list(protocol.all_probe_ids())
        matches = gallery.search(np.stack([embeddings[i]["score_embedding"] for i in probe_ids]),
                                 top_k=GALLERY_TOP_K, method="fused")
        search_seconds = time.time() - started
        enrolled = len(gallery)
    answers = dict(zip(probe_ids, matches))
    # A tie for the first place counts against the probe, as tf_rgbd.metrics.identification
    # counts it (an untrained model's equal scores would otherwise win by enrolment order).
    correct = {i: bool(answers[i]) and answers[i][0].subject == subjects[i] and (
        len(answers[i]) < 2 or answers[i][1].score < answers[i][0].score) for i in probe_ids}
    rank1 = 100.0 * float(np.mean([correct[i] for i in probe_ids]))
    per_subset = {subset: 100.0 * float(np.mean([correct[i] for i in ids]))
                  for subset, ids in protocol.probes.items() if ids and all(
                      i in answers for i in ids)}

    keras_metrics = context.results["recognition"]["evaluations"]["full/generated"]
    keras_rank1 = 100.0 * keras_metrics["identification"]["fused"]["all_probes"]["rank1"]
    difference = rank1 - keras_rank1
    keras_per_subset = {subset: 100.0 * entry["rank1"] for subset, entry in
                        keras_metrics["identification"]["fused"]["subsets"].items()}
    check = {"gallery_rank1": rank1, "keras_rank1": keras_rank1, "difference": difference,
             "keras_rank1_per_subset": keras_per_subset,
             "gate_points": INT8_MAX_RANK1_DROP_POINTS,
             "passed": abs(difference) <= INT8_MAX_RANK1_DROP_POINTS + 1e-9,
             "probes": len(probe_ids), "point_per_probe": 100.0 / max(1, len(probe_ids))}
    context.log(f"  gallery through {fmt}: rank-1 {rank1:.2f}% vs Keras evaluation "
                f"{keras_rank1:.2f}% (difference {difference:+.2f} points, gate "
                f"{INT8_MAX_RANK1_DROP_POINTS:g}): {'pass' if check['passed'] else 'FAIL'}")

    # A few probes: one per subset, and a wrong answer when there is one.
    shown = []
    for ids in protocol.probes.values():
        if ids and len(shown) < config.gallery_probes_shown:
            shown.append(ids[len(shown) % len(ids)])
    wrong = [i for i in probe_ids if not correct[i] and i not in shown]
    if wrong and shown and all(correct[i] for i in shown):
        shown[-1] = wrong[0]
    gallery_by_subject = {subjects[i]: i for i in protocol.gallery}
    subset_of = {i: subset for subset, ids in protocol.probes.items() for i in ids}
    examples = []
    for probe_id in shown:
        examples.append({
            "probe": probe_id, "subject": subjects[probe_id], "subset": subset_of[probe_id],
            "matches": [{"subject": match.subject, "score": match.score,
                         "correct": match.subject == subjects[probe_id],
                         "gallery_example": gallery_by_subject.get(match.subject)}
                        for match in answers[probe_id]]})
    picture = demo_figures.plot_gallery_answers(
        [{"rgb": images[example["probe"]],
          "caption": f"probe {example['probe']}\n({example['subset']}; is "
                     f"{example['subject'].rsplit('/', 1)[-1]})",
          "matches": [{**match, "rgb": images[match["gallery_example"]]}
                      for match in example["matches"]]} for example in examples],
        context.figure("gallery_answers.png"))
    return {"artefact": {"format": fmt, "path": entry["path"], "sha256": entry["sha256"]},
            "gallery": context.relative(database), "enrolled_faces": enrolled,
            "subjects": len(protocol.gallery), "rank1": rank1, "rank1_per_subset": per_subset,
            "check": check, "examples": examples,
            "seconds": {"embed_split": round(embed_seconds, 2),
                        "enrol": round(enrol_seconds, 3), "search": round(search_seconds, 3)},
            "figures": {"gallery_answers": context.relative(picture)},
            "outputs": [context.relative(database), context.relative(picture)]}


def claims_paths(config: DemoConfig) -> list[str]:
    """The claims benchmark's results (full run first, then ``--quick``)."""
    full = config.claims_results
    root, extension = os.path.splitext(full)
    return [full, f"{root}_quick{extension}"]


def read_claims(config: DemoConfig) -> Optional[dict]:
    """The claims benchmark's verdicts when its results JSON exists (None otherwise)."""
    for path in claims_paths(config):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle)
            return {"path": path, "quick": path.endswith("_quick.json"),
                    "command": payload.get("command", ""),
                    "measured_at": payload.get("measured_at", ""),
                    "rows": [{key: row.get(key) for key in (
                        "claim", "statement", "a", "b", "metric", "difference", "ci95",
                        "verdict")} for row in payload.get("rows", [])]}
    return None


def stage_report(context: DemoContext) -> dict:
    """report.html (self-contained), report.md and metrics.json."""
    from tf_rgbd.experiments import report

    metrics = collect_metrics(context)
    io_utils.atomic_write_json(context.path(METRICS_FILE), metrics)
    html_path, markdown_path = report.write_report(metrics, context.output_dir)
    return {"outputs": [METRICS_FILE, context.relative(html_path),
                        context.relative(markdown_path)],
            "watch": claims_paths(context.config)}


STAGES: tuple[Stage, ...] = (
    Stage("dataset", "build the synthetic RGB-D dataset", stage_dataset, 0.06),
    Stage("depth_models", "train DepthNet and the cGAN baseline", stage_depth_models, 0.30),
    Stage("depth_table", "depth table on a common support", stage_depth_table, 0.03),
    Stage("augment", "augment the 2D split to RGB-D", stage_augment, 0.04),
    Stage("recognizers", "train the recognizer and the RGB baseline", stage_recognizers, 0.30),
    Stage("recognition", "identification and verification (D*, Dgt)", stage_recognition, 0.06),
    Stage("export", "export the pipeline graph behind parity gates", stage_export, 0.14),
    Stage("latency", "latency table", stage_latency, 0.04),
    Stage("gallery", "SQLite gallery through the deployed artefact", stage_gallery, 0.02),
    Stage("related_methods", "related methods' headline rows (hook)", stage_related_methods,
          0.0),
    Stage("report", "report.html, report.md, metrics.json", stage_report, 0.01),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


# ------------------------------------------------------------------ bookkeeping

def collect_metrics(context: DemoContext) -> dict:
    """Everything the report shows: the config, each stage's result and time, the claims."""
    stages = {}
    for stage in STAGES:
        record = read_record(context, stage.name)
        if record is not None:
            stages[stage.name] = {"title": stage.title, "seconds": record["seconds"],
                                  "finished_at": record["finished_at"],
                                  "result": record["result"]}
    return {"config": config_lib.to_dict(context.config), "output_dir": context.output_dir,
            "command": command_line(context.config), "stages": stages,
            "claims": read_claims(context.config),
            "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def command_line(config: DemoConfig) -> str:
    """The ``python -m training.demo`` command that makes this config's demo."""
    from tf_rgbd.config.demo import QUICK
    default = DemoConfig()
    quick = dataclasses.replace(default, **QUICK)
    is_quick = all(getattr(config, key) == value for key, value in QUICK.items())
    reference = quick if is_quick else default
    flags = ["--quick"] if is_quick else []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value != getattr(reference, field.name):
            text = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
            flags.append(f"--{field.name}={text}")
    return " ".join(["python -m training.demo", *flags])


def record_path(context: DemoContext, name: str) -> str:
    return context.path(STAGES_DIR, f"{name}.json")


def read_record(context: DemoContext, name: str) -> Optional[dict]:
    path = record_path(context, name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def record_is_valid(context: DemoContext, record: Optional[Mapping]) -> bool:
    """The stage's record exists, its outputs exist (JSON ones parse) and no watched input
    appeared or disappeared since."""
    if record is None:
        return False
    for relative in record["result"].get("outputs", []):
        path = context.path(relative)
        if not os.path.exists(path):
            return False
        if path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as handle:
                    json.load(handle)
            except (OSError, ValueError):
                return False
    watched = record.get("watched") or {}
    return all(os.path.exists(path) == existed for path, existed in watched.items())


def check_config(context: DemoContext) -> None:
    """Pins the config to the output directory (a demo is not resumed with other sizes)."""
    path = context.path(CONFIG_FILE)
    wanted = config_lib.to_dict(context.config)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            existing = json.load(handle)
        existing.pop("config_class", None)
        # A field added since that demo was made counts as its default.
        defaults = config_lib.to_dict(DemoConfig())
        differing = sorted(key for key in set(existing) | set(wanted)
                           if existing.get(key, defaults.get(key)) != wanted.get(key))
        if differing:
            raise DemoConfigMismatch(
                f"{context.output_dir} holds a demo made with other settings "
                f"({', '.join(differing)} differ; see {path}); give another --output_dir or "
                "delete that one")
        return
    os.makedirs(context.output_dir, exist_ok=True)
    io_utils.atomic_write_json(path, wanted)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run_demo(config: DemoConfig, log: Callable[[str], None] = print,
             stages: Optional[Sequence[str]] = None) -> dict:
    """Runs (or resumes) the demo; returns :func:`collect_metrics`' dict plus ``ran`` /
    ``skipped`` stage names and ``passed`` (the gallery's rank-1 check).

    Args:
      config: the demo's sizes (:class:`~tf_rgbd.config.demo.DemoConfig`).
      stages: run only up to and including the last of these stage names (default: all).
    Raises:
      DemoConfigMismatch: ``output_dir`` holds a demo made with another config.
    """
    context = DemoContext(config, os.path.abspath(config.output_dir), log=log)
    check_config(context)
    last = len(STAGES) - 1
    if stages:
        unknown = sorted(set(stages) - set(STAGE_NAMES))
        if unknown:
            raise ValueError(f"unknown demo stages {unknown}; choose from {list(STAGE_NAMES)}")
        last = max(STAGE_NAMES.index(name) for name in stages)
    started = time.time()
    ran, skipped, spent_weight, spent_seconds = [], [], 0.0, 0.0
    rerun = False
    for index, stage in enumerate(STAGES[:last + 1], start=1):
        record = read_record(context, stage.name)
        prefix = f"[{index}/{last + 1}] {stage.title}"
        if not rerun and record_is_valid(context, record):
            context.results[stage.name] = record["result"]
            skipped.append(stage.name)
            log(f"{prefix}: done earlier ({record['seconds']:.1f} s then), skipped")
            continue
        rerun = True
        log(f"{prefix} ...")
        stage_started = time.time()
        result = stage.run(context)
        seconds = time.time() - stage_started
        watched = {path: os.path.exists(path) for path in result.get("watch", [])}
        record = {"name": stage.name, "title": stage.title, "seconds": round(seconds, 2),
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "watched": watched,
                  "result": result}
        io_utils.atomic_write_json(record_path(context, stage.name), record)
        context.results[stage.name] = json.loads(json.dumps(result,
                                                            default=io_utils.json_default))
        ran.append(stage.name)
        spent_weight += stage.weight
        spent_seconds += seconds
        left_weight = sum(s.weight for s in STAGES[index:last + 1])
        estimate = (f"~{_clock(left_weight * spent_seconds / spent_weight)} left"
                    if spent_weight > 0 else "estimate after the first timed stage")
        log(f"{prefix}: {seconds:.1f} s (elapsed {_clock(time.time() - started)}, {estimate})")
    summary = collect_metrics(context)
    gallery = summary["stages"].get("gallery", {}).get("result", {})
    summary.update(ran=ran, skipped=skipped, seconds=round(time.time() - started, 1),
                   passed=bool(gallery.get("check", {}).get("passed", True)))
    log(f"demo: {len(ran)} stages run, {len(skipped)} skipped, {_clock(summary['seconds'])}; "
        f"report: {context.path('report.html')}")
    return summary


def reset_stage(output_dir: str, name: str) -> None:
    """Forgets a stage's record (it and every later stage run again next time)."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown demo stage {name!r}; choose from {list(STAGE_NAMES)}")
    path = os.path.join(output_dir, STAGES_DIR, f"{name}.json")
    if os.path.exists(path):
        os.remove(path)


__all__ = ["DemoConfig", "DemoContext", "Stage", "STAGES", "STAGE_NAMES", "run_demo",
           "collect_metrics", "reset_stage", "read_claims"]
