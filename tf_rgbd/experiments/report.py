"""The demo's report: ``report.html`` (self-contained: PNGs inlined as base64, real tables, one
stylesheet) and ``report.md`` (the same content, pictures linked), from the demo's
``metrics.json`` dict (:func:`tf_rgbd.experiments.demo.collect_metrics`).

It opens with a one-screen summary (what was trained, the headline numbers, the claims
verdicts when the claims benchmark ran), then one section per stage. Every picture states the
command and the data it came from. Both renderings are built from one list of blocks
(:class:`Paragraph`, :class:`Table`, :class:`Figure`, :class:`Cards`) so they cannot disagree.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import math
import os
import re
from typing import Any, Mapping, Optional, Sequence

from tf_rgbd import io_utils

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
METHOD_LABELS = {"rgb": "RGB", "depth": "Depth", "fused": "RGB-D (fused)"}
DEPTH_LABELS = {"generated": "D*", "gt": "Dgt"}
DEPTH_COLUMNS = (("mse_255", "MSE (0-255, whole face)"),
                 ("mse_255_intersection", "MSE (0-255, common support)"),
                 ("rmse_mm", "RMSE (mm)"), ("abs_rel", "AbsRel"),
                 ("delta_1.25", "δ<1.25"), ("mask_miou", "mask mIoU"),
                 ("mask_pixel_accuracy", "mask pixel acc."), ("coverage", "coverage"))
SHOWN_FARS = ("0.001", "0.01", "0.1")


@dataclasses.dataclass(frozen=True)
class Paragraph:
    """Text; `code` spans and **bold** are rendered."""
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    """A real table. ``failed_rows``: indices of rows shown as failures."""
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    failed_rows: Sequence[int] = ()


@dataclasses.dataclass(frozen=True)
class Figure:
    """A PNG of the output directory with what it shows and where it came from."""
    path: str
    caption: str
    source: str


@dataclasses.dataclass(frozen=True)
class Cards:
    """Headline numbers: (label, value, note, ok: True / False / None)."""
    items: Sequence[tuple[str, str, str, Optional[bool]]]


@dataclasses.dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: Sequence[Any]


# ------------------------------------------------------------------ numbers

def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    if number != 0 and (abs(number) < 10 ** -digits or abs(number) >= 1e6):
        return f"{number:.2e}"
    return f"{number:.{digits}f}"


def _scaled(value: Any, factor: float) -> Any:
    return value * factor if isinstance(value, (int, float)) else value


def _percent(fraction: Any, digits: int = 1) -> str:
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "–"
    return f"{100.0 * float(fraction):.{digits}f}%"


def _clock(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _size(size_bytes: Optional[int]) -> str:
    return "–" if not size_bytes else f"{size_bytes / 1e6:.2f} MB"


# ------------------------------------------------------------------ content

def _stage(metrics: Mapping, name: str) -> dict:
    return (metrics.get("stages", {}).get(name) or {}).get("result") or {}


def _source(metrics: Mapping, stage: str, data: str) -> str:
    return f"`{metrics['command']}`, stage `{stage}`; data: `{data}`"


def _rank1(metrics: Mapping, key: str, method: str = "fused") -> Optional[float]:
    evaluation = _stage(metrics, "recognition").get("evaluations", {}).get(key)
    if not evaluation:
        return None
    entry = evaluation["identification"].get(method)
    return None if entry is None else entry["average_rank1"]


def build_sections(metrics: Mapping) -> list[Section]:
    """The report as sections of blocks (summary first)."""
    sections = [_summary(metrics)]
    for builder in (_dataset_section, _depth_section, _augment_section, _recognizer_section,
                    _recognition_section, _related_section, _export_section, _latency_section,
                    _gallery_section, _timing_section):
        section = builder(metrics)
        if section is not None:
            sections.append(section)
    return sections


def _summary(metrics: Mapping) -> Section:
    config = metrics["config"]
    dataset = _stage(metrics, "dataset")
    depth = _stage(metrics, "depth_table").get("metrics", {})
    export = _stage(metrics, "export")
    gallery = _stage(metrics, "gallery")
    latency = _stage(metrics, "latency")
    total = sum((stage.get("seconds") or 0.0) for stage in metrics.get("stages", {}).values())
    blocks: list[Any] = [Paragraph(
        f"Everything below was produced by `{metrics['command']}` in `{metrics['output_dir']}` "
        f"(report written {metrics.get('generated_at', '')}; stages took {_clock(total)} in "
        "all, on a shared 2-core CPU machine: see the timing table at the end).")]
    trained = [
        f"a synthetic RGB-D face dataset of {config['num_identities']} identities × "
        f"{config['images_per_identity']} images ({dataset.get('test_identities', '?')} test "
        "identities, disjoint from training)",
        f"DepthNet and the cGAN baseline ({config['depth_steps']} steps each, "
        f"{config['image_size']}×{config['image_size']})",
        f"the segmentation-guided RGB-D recognizer with all four losses on RGB + D* + M*, and an "
        f"RGB-only baseline ({config['recognizer_epochs']} epochs × "
        f"{config['recognizer_steps_per_epoch']} steps, tiny backbone)",
        "the edge `pipeline` graph (rgb → DepthNet → augmentation transform → recognizer) "
        f"exported to {', '.join(config['export_formats'])}, each behind a parity gate",
        "a SQLite gallery of the test identities, queried through the deployed artefact"]
    blocks.append(Paragraph("**What was trained and built:** " + "; ".join(trained) + "."))
    cards = []
    full_dstar, full_dgt = _rank1(metrics, "full/generated"), _rank1(metrics, "full/gt")
    baseline = _rank1(metrics, "rgb_baseline/generated", "rgb")
    if full_dstar is not None:
        cards.append(("rank-1, RGB-D + D* (avg of subsets)", _percent(full_dstar),
                      f"RGB baseline {_percent(baseline)}; with Dgt {_percent(full_dgt)}", None))
    evaluation = _stage(metrics, "recognition").get("evaluations", {}).get("full/generated")
    if evaluation:
        fused = evaluation["verification"]["fused"]
        cards.append(("EER, RGB-D + D*", _percent(fused["eer"]),
                      f"TAR@FAR=0.01 {_percent(fused['tar_at_far'].get('0.01'))}", None))
    if depth:
        dn = depth.get("DepthNet", {}).get("mse_255_intersection")
        cg = depth.get("cGAN (Pini et al.)", {}).get("mse_255_intersection")
        mf = depth.get("mean-face baseline", {}).get("mse_255_intersection")
        cards.append(("depth MSE (0-255), DepthNet", _number(dn),
                      f"cGAN {_number(cg)}, mean face {_number(mf)} (common support)", None))
    if export:
        rows = [row for row in export.get("parity", []) if not row.get("reference")]
        passed = sum(1 for row in rows if row["passed"])
        cards.append(("export parity gates", f"{passed}/{len(rows)} passed",
                      ", ".join(f"{row['format']} {'✓' if row['passed'] else '✗'}"
                                for row in rows), passed == len(rows)))
    if latency:
        batch1 = {row["format"]: row for row in latency.get("rows", []) if row["batch"] == 1}
        best = min(batch1.values(), key=lambda row: row["p50_ms"]) if batch1 else None
        if best:
            cards.append(("fastest artefact, batch 1", f"{best['p50_ms']:.2f} ms",
                          f"{best['format']} (Keras graph "
                          f"{_number((batch1.get('keras') or {}).get('p50_ms'))} ms)", None))
    if gallery:
        check = gallery["check"]
        cards.append((f"gallery rank-1 via {gallery['artefact']['format']}",
                      f"{check['gallery_rank1']:.2f}%",
                      f"Keras evaluation {check['keras_rank1']:.2f}% (Δ "
                      f"{check['difference']:+.2f}, gate ±{check['gate_points']:g})",
                      bool(check["passed"])))
    blocks.append(Cards(cards))
    claims = metrics.get("claims")
    if claims:
        kind = "quick smoke run, decides nothing" if claims["quick"] else "seeded run"
        blocks.append(Paragraph(
            f"**Claims of the paper** ({kind}: `{claims.get('command') or claims['path']}`, "
            f"{claims.get('measured_at', '')}):"))
        def scale(row) -> float:   # rank-1 is stored as a fraction; shown in points
            return 100.0 if str(row.get("metric", "")).startswith("average rank-1") else 1.0

        blocks.append(Table(
            ["claim", "statement", "A vs B", "metric", "difference (A better)", "95% CI",
             "verdict"],
            [[row["claim"], row["statement"], f"{row['a']} vs {row['b']}",
              "rank-1 (points)" if scale(row) == 100.0 else "depth MSE (0-255)",
              _number(_scaled(row.get("difference"), scale(row)), 2),
              "[" + ", ".join(_number(_scaled(v, scale(row)), 2)
                              for v in (row.get("ci95") or [])) + "]",
              row["verdict"]] for row in claims["rows"]]))
    else:
        blocks.append(Paragraph(
            f"Claims verdicts: `{metrics['config']['claims_results']}` does not exist (run "
            "`python -m bench.claims --quick` or the full `python -m bench.claims`, then "
            "re-run the demo: only the report is redone)."))
    return Section("summary", "Summary", blocks)


def _dataset_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "dataset")
    if not result:
        return None
    protocol = result["protocol"]
    blocks = [
        Paragraph(f"`{result['data_dir']}`: the embedded synthetic RGB-D face generator "
                  "(a parametric 3D face rendered with a NumPy z-buffer: RGB, metric depth, "
                  "7-class mask). Test identities are disjoint from the training ones."),
        Table(["split", "examples"], [[split, count] for split, count in
                                      result["splits"].items()]),
        Table(["protocol", "split", "gallery (1 per identity)",
               *[f"probes: {subset}" for subset in protocol["probes"]]],
              [[protocol["name"], protocol["split"], protocol["gallery"],
                *protocol["probes"].values()]],
              caption=protocol.get("description", "")),
        Figure(result["figures"]["dataset_preview"],
               "Two test identities: the gallery face, then one probe of each subset (columns); "
               "RGB, depth (near = warm), mask (rows); titles give subject, expression, yaw, "
               "occlusion, session.",
               _source(metrics, "dataset", "synthetic/test-*.tfrecord"))]
    return Section("dataset", "1. Synthetic RGB-D dataset", blocks)


def _depth_section(metrics: Mapping) -> Optional[Section]:
    models = _stage(metrics, "depth_models").get("models")
    table = _stage(metrics, "depth_table")
    if not models:
        return None
    blocks: list[Any] = [Table(["model", "steps", "time", "generator"],
                               [[name, entry["steps"], _clock(entry["seconds"]),
                                 f"`{entry['generator']}`"] for name, entry in models.items()],
                               caption="Both depth models: same data, budget and learning rate.")]
    if table:
        results = table["metrics"]
        columns = [(key, label) for key, label in DEPTH_COLUMNS
                   if any(key in row and row[key] is not None and not (
                       isinstance(row[key], float) and math.isnan(row[key]))
                       for row in results.values())]
        blocks.append(Table(
            ["method", *[label for _, label in columns]],
            [[name, *[_number(row.get(key), 4 if key in ("abs_rel",) else 3)
                      for key, _ in columns]] for name, row in results.items()],
            caption="Test identities. The support-based columns are measured on the pixels "
                    "where the ground truth AND every compared method predict depth (one common "
                    "support, the DepthNet paper's Table 1 protocol); lower MSE is better, "
                    "higher δ / mIoU is better. Data: `depth/depth_metrics.json`."))
        blocks.append(Figure(
            table["figures"]["depth_predictions"],
            "Test faces: ground-truth depth, each model's prediction (DepthNet's D* is zeroed "
            "where its mask says background) and |error| on the ground truth's face pixels; "
            "ground-truth mask and DepthNet's M*.",
            _source(metrics, "depth_table", "synthetic/test-*.tfrecord, depth/*/generator.keras")))
    return Section("depth", "2. DepthNet and the cGAN baseline", blocks)


def _augment_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "augment")
    if not result:
        return None
    stats = result.get("stats") or {}
    rows = [[key.replace("_", " "), _number(value) if isinstance(value, float) else value]
            for key, value in stats.items() if not isinstance(value, (dict, list))]
    return Section("augment", "3. 2D → RGB-D augmentation", [
        Paragraph(f"`{result['data_dir']}`: {result['examples']} examples, each with RGB "
                  "(background removed by M*), D*, M*, and the ground-truth depth kept beside "
                  "D* (`gt_depth`) so the same model can be evaluated with both."),
        Table(["statistic", "value"], rows)])


def _recognizer_section(metrics: Mapping) -> Optional[Section]:
    runs = _stage(metrics, "recognizers").get("runs")
    if not runs:
        return None
    return Section("recognizers", "4. Recognizers", [Table(
        ["run", "modalities", "losses", "steps", "time", "run directory"],
        [[variant, ", ".join(entry["modalities"]), ", ".join(entry.get("losses") or []),
          entry["steps"], _clock(entry.get("seconds")), f"`{entry['model_dir']}`"]
         for variant, entry in runs.items()],
        caption="`full`: RGB + D* + M* with the classification, semantic-alignment, "
                "cross-modal focal and disentanglement losses; `rgb_baseline`: the RGB branch "
                "with the classification loss.")])


def _recognition_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "recognition")
    evaluations = result.get("evaluations")
    if not evaluations:
        return None
    first = next(iter(evaluations.values()))
    subsets = list(first["num_probes"])
    rows, verification_rows = [], []
    for key, evaluation in evaluations.items():
        variant, source = key.split("/")
        for method, entry in evaluation["identification"].items():
            depth_note = DEPTH_LABELS[source] if "depth" in evaluation["modalities"] else "–"
            label = [variant, METHOD_LABELS.get(method, method), depth_note]
            rows.append([*label, *[_percent(entry["subsets"][subset]["rank1"])
                                   for subset in subsets],
                         _percent(entry["average_rank1"]),
                         _percent(entry["all_probes"]["rank1"])])
            verify = evaluation["verification"][method]
            verification_rows.append([*label, *[_percent(verify["tar_at_far"].get(far))
                                                for far in SHOWN_FARS],
                                      _percent(verify["eer"]), _number(verify["auc"], 4)])
    probes = ", ".join(f"{subset} {count}" for subset, count in first["num_probes"].items())
    blocks: list[Any] = [
        Paragraph(f"Protocol `{first['protocol']}` on the test identities: gallery "
                  f"{first['num_gallery']} faces (one per identity), probes {probes}; one probe "
                  "moves a subset's rank-1 by at most "
                  f"{100.0 / min(first['num_probes'].values()):.2f} points. Flip-test "
                  "embeddings. D* = DepthNet's depth, Dgt = ground truth."),
        Table(["run", "score", "depth", *[f"rank-1 {subset}" for subset in subsets],
               "average", "all probes"], rows,
              caption="Identification (rank-1 per probe subset; the average is over subsets)."),
        Table(["run", "score", "depth", *[f"TAR@FAR={far}" for far in SHOWN_FARS], "EER",
               "AUC"], verification_rows,
              caption="Verification over all gallery × probe pairs (– where fewer than 1/FAR "
                      "impostor pairs exist).")]
    collapsed = {key: evaluation["collapsed_branches"] for key, evaluation in evaluations.items()
                 if evaluation.get("collapsed_branches")}
    if collapsed:
        blocks.insert(0, Paragraph(
            "**Warning: collapsed model.** " + "; ".join(
                f"`{key}`: the {', '.join(branches)} embeddings are (nearly) constant over the "
                f"test split (per-dimension std "
                f"{', '.join(_number(evaluations[key]['embedding_spread'][b], 2) for b in branches)})"
                for key, branches in collapsed.items())
            + ". Every score ties, so these rows' rank-1 and EER measure nothing."))
    figures = result.get("figures", {})
    data = "generated/test-*.tfrecord"
    for key, caption in (
            ("full/generated:cmc_subsets", "CMC per probe subset, full model (fused), D*."),
            ("full/gt:cmc_subsets", "CMC per probe subset, full model (fused), Dgt."),
            ("full/generated:cmc_methods", "CMC of the RGB, depth and fused scores, all probes, "
                                           "D*."),
            ("roc", "ROC curves (all gallery × probe pairs) with TAR at FAR 0.01 and 0.1 "
                    "marked."),
            ("full/generated:tsne", "t-SNE of the test identities' RGB identity embeddings "
                                    "(f_id), coloured by identity (10 identities)."),
            ("full/generated:attention", "The mask branch's spatial attention maps over test "
                                         "faces (contrast-stretched; raw range in each title).")):
        if key in figures:
            blocks.append(Figure(figures[key], caption,
                                 _source(metrics, "recognition", f"{data}, recognizer/full")))
    return Section("recognition", "5. Identification and verification", blocks)


def _related_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "related_methods")
    if not result:
        return None
    if result.get("status") != "read":
        return Section("related", "6. Related methods", [Paragraph(result["note"])])
    blocks = [Paragraph(f"Headline rows read from `{result['path']}` "
                        f"{result.get('source') or ''}.")]
    tables = result.get("tables") or [{"title": "", "rows": result["rows"]}]
    for table in tables:
        rows = table["rows"]
        headers = list(dict.fromkeys(key for row in rows for key in row))
        # Labels (method, source, probe set, ...) first: the JSON may hold columns sorted.
        labels = [key for key in headers if any(isinstance(row.get(key), str) for row in rows)]
        headers = labels + [key for key in headers if key not in labels]
        if table["title"]:
            blocks.append(Paragraph(f"**{table['title']}**"))
        blocks.append(Table(headers, [[_number(row.get(key)) if isinstance(row.get(key), float)
                                       else row.get(key, "–") for key in headers]
                                      for row in rows]))
    return Section("related", "6. Related methods", blocks)


def _export_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "export")
    if not result:
        return None
    rows, failed = [], []
    for index, row in enumerate(result["parity"]):
        rank1 = (f"{row['rank1_keras']:.1f} → {row['rank1_artefact']:.1f}"
                 if row.get("rank1_keras") is not None and row.get("rank1_artefact") is not None
                 else "–")
        verdict = "reference" if row.get("reference") else "pass" if row["passed"] else "FAIL"
        if not row["passed"]:
            failed.append(index)
        rows.append([row["artefact"], row["gate"], verdict, _number(row.get("max_abs"), 6),
                     _number(row.get("min_mean_cosine"), 6), rank1,
                     _number(row.get("latency_ms_batch1")), _size(row.get("size_bytes")),
                     "; ".join(row.get("failures") or []) or ""])
    gates = result.get("gates", {})
    blocks: list[Any] = [
        Paragraph(f"`{result['export_dir']}`: the `pipeline` graph in every format, each run in "
                  "its own runtime on real test-split examples and compared with the Keras "
                  f"graph. Gates: fp32 max |Δ| ≤ {gates.get('fp32_max_abs', 1e-4):g}; int8 mean "
                  f"embedding cosine ≥ {gates.get('int8_min_mean_cosine', 0.99):g} and rank-1 "
                  f"within {gates.get('int8_max_rank1_drop_points', 1.0):g} point of Keras. A "
                  "failing artefact is removed from the export and listed here as FAIL with its "
                  "figures."),
        Table(["artefact", "gate", "result", "max |Δ|", "min mean cosine",
               "rank-1 Keras → artefact", "ms (batch 1)", "size", "failures"], rows,
              caption="Data: `export/parity.json` (every comparison, pass or fail).",
              failed_rows=failed)]
    if result.get("skipped"):
        blocks.append(Table(["artefact", "skipped because"],
                            [[key, reason] for key, reason in result["skipped"].items()]))
    return Section("export", "7. Export and parity gates", blocks)


def _latency_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "latency")
    if not result:
        return None
    rows = [[row["format"], row["precision"], row["batch"], _number(row["p50_ms"]),
             _number(row["p90_ms"]), _number(row["images_per_s"], 1),
             _number(row.get("ratio_to_keras")), _number(row.get("ratio_to_fp32")),
             _size(row["size_bytes"]), row["parity"]] for row in result["rows"]]
    load = result.get("load_average_before") or [None]
    return Section("latency", "8. Latency", [
        Paragraph("Wall-clock latency of one `run` call per artefact in its runtime (random "
                  "inputs of the graph's shapes, after a warm-up), p50 and p90 over "
                  f"{result['repeats']} runs; `keras` is the Keras graph through tf.function, the "
                  f"reference of every ratio. Load average when it started: {_number(load[0])} on "
                  f"{(result.get('machine') or {}).get('cpu_count', '?')} CPUs: on a shared "
                  "machine, compare within this table only."),
        Table(["format", "precision", "batch", "p50 ms", "p90 ms", "images/s", "× keras",
               "× fp32", "size", "parity"], rows,
              caption="Data: `export/latency.json` (tf_rgbd.deploy.latency, as "
                      "`python -m bench.inference_latency` measures).")])


def _gallery_section(metrics: Mapping) -> Optional[Section]:
    result = _stage(metrics, "gallery")
    if not result:
        return None
    check = result["check"]
    artefact = result["artefact"]
    seconds = result["seconds"]
    blocks: list[Any] = [
        Paragraph(f"The {result['subjects']} test identities' gallery images were embedded by "
                  f"`export/{artefact['path']}` ({artefact['format']}) and enrolled in "
                  f"`{result['gallery']}` (SQLite, one transaction per subject); every probe "
                  "was identified through the same artefact (fused score, top-"
                  f"{len(result['examples'][0]['matches']) if result['examples'] else 3})."),
        Table(["", "rank-1 (all probes)", *[f"rank-1 {s}" for s in result["rank1_per_subset"]]],
              [["gallery (deployed artefact)", f"{check['gallery_rank1']:.2f}%",
                *[f"{v:.2f}%" for v in result["rank1_per_subset"].values()]],
               ["Keras evaluation (full, D*, fused)", f"{check['keras_rank1']:.2f}%",
                *[_number((check.get("keras_rank1_per_subset") or {}).get(subset)) + "%"
                  for subset in result["rank1_per_subset"]]]],
              caption=f"Difference {check['difference']:+.2f} points over {check['probes']} "
                      f"probes (one probe = {check['point_per_probe']:.2f} points); the gate is "
                      f"±{check['gate_points']:g} point: "
                      f"{'PASS' if check['passed'] else 'FAIL'}.",
              failed_rows=() if check["passed"] else (0,)),
        Table(["step", "seconds"], [["embed the test split", seconds["embed_split"]],
                                    ["enrol the gallery", seconds["enrol"]],
                                    ["search every probe", seconds["search"]]]),
        Figure(result["figures"]["gallery_answers"],
               "Probes (left) and the gallery's top-3 subjects with their enrolled face and "
               "fused score (green: the probe's identity; red: another).",
               _source(metrics, "gallery", f"synthetic/test-*.tfrecord, {result['gallery']}"))]
    return Section("gallery", "9. Gallery identification through the deployed artefact", blocks)


def _timing_section(metrics: Mapping) -> Section:
    rows = [[name, stage["title"], _number(stage["seconds"], 1), stage["finished_at"]]
            for name, stage in metrics.get("stages", {}).items()]
    total = sum(stage["seconds"] for stage in metrics.get("stages", {}).values())
    rows.append(["total", "", _number(total, 1), ""])
    return Section("timing", "Stage times", [
        Paragraph("Seconds each stage took when it last ran (a resumed demo keeps the times of "
                  "the stages it skipped). Measured on a 2-core CPU machine shared with other "
                  "jobs."),
        Table(["stage", "what", "seconds", "finished"], rows)])


# ------------------------------------------------------------------ rendering

def _inline_html(text: str) -> str:
    escaped = html.escape(str(text))
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _cell_html(cell: Any) -> str:
    """A table cell: numbers right-aligned on one line, text left-aligned."""
    text = str(cell)
    numeric = bool(re.fullmatch(r"[-+–]?[\d.,]*\d[\d.,e+-]*\s*(%|s|ms|MB|m\d+s)?|–|[\d.]+ → [\d.]+|"
                                r"\d+m\d+s", text.strip()))
    return f"<td class=\"{'n' if numeric else 't'}\">{_inline_html(text)}</td>"


def _png_data_uri(path: str) -> str:
    with open(path, "rb") as handle:
        return "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")


STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:4px 0 2px}
h2{font-size:20px;margin:0 0 10px;border-bottom:2px solid #e3e6ec;padding-bottom:6px}
nav{font-size:13px;margin:6px 0 18px}nav a{margin-right:12px;color:#2458b3;text-decoration:none}
section{background:#fff;border:1px solid #e3e6ec;border-radius:8px;padding:18px 22px;margin:16px 0}
p{margin:8px 0}code{background:#eef1f6;padding:1px 4px;border-radius:3px;font-size:12.5px;
word-break:break-all}
table{border-collapse:collapse;margin:10px 0 4px;font-size:13px;width:auto;max-width:100%}
th,td{border:1px solid #dde1e8;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f0f2f6;font-weight:600}td.t,th:first-child{text-align:left}
td.n{white-space:nowrap}
tr.fail td{background:#fde8e8;color:#8a1c1c}
caption{caption-side:bottom;text-align:left;font-size:12px;color:#5b6373;padding-top:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px;
margin:12px 0}
.card{border:1px solid #dde1e8;border-radius:8px;padding:10px 12px;background:#fafbfc}
.card .label{font-size:12px;color:#5b6373}.card .value{font-size:24px;font-weight:600;margin:2px 0}
.card .note{font-size:12px;color:#5b6373}.card.ok{border-left:5px solid #2e9d4d}
.card.bad{border-left:5px solid #c62828}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:14px 0;max-width:100%}
.figs figure{flex:1 1 440px;max-width:calc(50% - 7px)}
.figs figure:only-child{flex:0 1 auto;max-width:100%}
figure img{max-width:100%;border:1px solid #e3e6ec;border-radius:4px}
figcaption{font-size:12.5px;color:#39404d;margin-top:4px}figcaption .source{display:block;
color:#6b7384;font-size:11.5px;margin-top:2px}
"""


def render_html(sections: Sequence[Section], output_dir: str, title: str) -> str:
    """One self-contained HTML page (pictures inlined)."""
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title>",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<style>{STYLE}</style></head><body><main>",
             f"<h1>{html.escape(title)}</h1>",
             "<nav>" + "".join(f"<a href=\"#{s.anchor}\">{html.escape(s.title)}</a>"
                               for s in sections) + "</nav>"]
    for section in sections:
        parts.append(f"<section id=\"{section.anchor}\"><h2>{html.escape(section.title)}</h2>")
        in_figures = False
        for block in section.blocks:
            if isinstance(block, Figure) != in_figures:
                parts.append("<div class=\"figs\">" if not in_figures else "</div>")
                in_figures = not in_figures
            if isinstance(block, Paragraph):
                parts.append(f"<p>{_inline_html(block.text)}</p>")
            elif isinstance(block, Cards):
                parts.append("<div class=\"cards\">")
                for label, value, note, ok in block.items:
                    status = "" if ok is None else " ok" if ok else " bad"
                    parts.append(f"<div class=\"card{status}\"><div class=\"label\">"
                                 f"{_inline_html(label)}</div><div class=\"value\">"
                                 f"{_inline_html(value)}</div><div class=\"note\">"
                                 f"{_inline_html(note)}</div></div>")
                parts.append("</div>")
            elif isinstance(block, Table):
                parts.append("<table>")
                if block.caption:
                    parts.append(f"<caption>{_inline_html(block.caption)}</caption>")
                parts.append("<thead><tr>" + "".join(f"<th>{_inline_html(h)}</th>"
                                                     for h in block.headers) + "</tr></thead>")
                parts.append("<tbody>")
                for index, row in enumerate(block.rows):
                    css = " class=\"fail\"" if index in block.failed_rows else ""
                    parts.append(f"<tr{css}>" + "".join(_cell_html(cell)
                                                        for cell in row) + "</tr>")
                parts.append("</tbody></table>")
            elif isinstance(block, Figure):
                path = os.path.join(output_dir, block.path)
                parts.append(f"<figure><img alt=\"{html.escape(block.caption)}\" "
                             f"src=\"{_png_data_uri(path)}\"><figcaption>"
                             f"{_inline_html(block.caption)}<span class=\"source\">Source: "
                             f"{_inline_html(block.source)}; file <code>"
                             f"{html.escape(block.path)}</code></span></figcaption></figure>")
        if in_figures:
            parts.append("</div>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: Sequence[Section], title: str) -> str:
    """The same report as Markdown (pictures linked relative to the output directory)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Cards):
                lines += ["| headline | value | detail |", "|---|---|---|"]
                for label, value, note, ok in block.items:
                    mark = "" if ok is None else " ✓" if ok else " ✗"
                    lines.append(f"| {_markdown_cell(label)} | **{_markdown_cell(value)}**{mark} "
                                 f"| {_markdown_cell(note)} |")
                lines.append("")
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(_markdown_cell(h) for h in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                for index, row in enumerate(block.rows):
                    cells = [_markdown_cell(cell) for cell in row]
                    if index in block.failed_rows:
                        cells[0] = f"**{cells[0]}** ✗"
                    lines.append("| " + " | ".join(cells) + " |")
                if block.caption:
                    lines += ["", f"*{block.caption}*"]
                lines.append("")
            elif isinstance(block, Figure):
                lines += [f"![{block.caption}]({block.path})", "",
                          f"*{block.caption}* Source: {block.source}.", ""]
    return "\n".join(lines) + "\n"


def write_report(metrics: Mapping, output_dir: str,
                 title: str = "tf-rgbd: the whole system, end to end") -> tuple[str, str]:
    """Writes ``report.html`` and ``report.md`` into ``output_dir``; returns their paths."""
    sections = build_sections(metrics)
    html_path = os.path.join(output_dir, HTML_FILE)
    markdown_path = os.path.join(output_dir, MARKDOWN_FILE)
    io_utils.atomic_write_text(html_path, render_html(sections, output_dir, title))
    io_utils.atomic_write_text(markdown_path, render_markdown(sections, title))
    for path in (html_path, markdown_path):
        os.chmod(path, 0o644)  # a report to open and share (atomic writes create 0600 files)
    return html_path, markdown_path
