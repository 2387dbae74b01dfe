"""`make demo`'s stages at tiny sizes, run once for the module (in-process, the library that
``python -m training.demo`` calls): every stage, resuming, the report's HTML, the gallery's
rank-1 against the Keras evaluation's.

The demo is run once here and nowhere else in the suite (BUILD.md documents it as ``make demo``,
which tests/test_build_md.py does not run).
"""
from __future__ import annotations

import base64
import dataclasses
import html.parser
import json
import os

import pytest

from tf_rgbd.config.demo import QUICK, DemoConfig

# Tiny: 12 identities (4 test identities), 16-pixel models, 2 steps each; the SavedModel
# exported (its fp32 gate; ONNX / TFLite conversion and their gates are tested on a tiny system
# in tests/deploy, and `make demo QUICK=1` exports all four formats).
TINY = dict(num_identities=12, test_fraction=0.34, images_per_identity=6, data_image_size=32,
            image_size=16, num_workers=1, depth_steps=2, depth_batch_size=8,
            depth_base_filters=4, recognizer_epochs=1, recognizer_steps_per_epoch=2,
            recognizer_batch_size=8, embedding_dim=16,
            export_formats=("savedmodel",), calibration_samples=8,
            parity_samples=16, latency_formats=("keras",), latency_batch_sizes=(1,),
            latency_repeats=3,
            gallery_probes_shown=2, run_eagerly=True)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from tf_rgbd.experiments import demo

    root = tmp_path_factory.mktemp("demo")
    config = DemoConfig(output_dir=str(root / "demo"),
                        related_results=str(root / "related.json"),
                        claims_results=str(root / "claims.json"), **TINY)
    lines: list[str] = []
    summary = demo.run_demo(config, log=lines.append)
    return config, summary, lines


def test_every_stage_runs_and_records_its_time(demo_run):
    from tf_rgbd.experiments import demo

    config, summary, lines = demo_run
    assert summary["ran"] == list(demo.STAGE_NAMES) and summary["skipped"] == []
    for index, name in enumerate(demo.STAGE_NAMES, start=1):
        record = demo.read_record(demo.DemoContext(config, config.output_dir), name)
        assert record is not None and record["seconds"] >= 0.0, name
        progress = [line for line in lines if line.startswith(f"[{index}/")
                    and "elapsed" in line]
        assert progress and ("left" in progress[0] or "estimate" in progress[0]), name
    dataset = summary["stages"]["dataset"]["result"]
    assert dataset["test_identities"] == 4
    export = summary["stages"]["export"]["result"]
    formats = {row["format"] for row in export["parity"]}
    assert formats == {"keras", "savedmodel"}, formats
    latency = summary["stages"]["latency"]["result"]
    assert [row["format"] for row in latency["rows"]] == ["keras"]
    assert all(row["p50_ms"] > 0 for row in latency["rows"])
    assert summary["stages"]["related_methods"]["result"]["status"] == "not wired"


def test_gallery_rank1_equals_the_keras_evaluation(demo_run):
    from tf_rgbd.deploy import gallery as gallery_lib

    config, summary, _ = demo_run
    result = summary["stages"]["gallery"]["result"]
    check = result["check"]
    keras = summary["stages"]["recognition"]["result"]["evaluations"]["full/generated"]
    assert check["keras_rank1"] == pytest.approx(
        100.0 * keras["identification"]["fused"]["all_probes"]["rank1"])
    assert check["passed"] and abs(check["gallery_rank1"] - check["keras_rank1"]) <= 1.0, check
    assert summary["passed"]
    # The gallery on disk holds one enrolled face per test identity.
    with gallery_lib.Gallery(os.path.join(config.output_dir, result["gallery"]), None,
                             create=False) as gallery:
        assert len(gallery.subjects()) == result["subjects"] == 4


class _ReportParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headers, self.links = 0, [], [], []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "th":
            self._in_th = True
            self.headers.append("")
        elif tag in ("link", "script"):
            self.links.append(tag)

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.headers[-1] += data


def test_the_report_is_self_contained_html_with_tables_and_pictures(demo_run):
    config, summary, _ = demo_run
    with open(os.path.join(config.output_dir, "report.html"), encoding="utf-8") as handle:
        text = handle.read()
    parser = _ReportParser()
    parser.feed(text)
    assert parser.tables >= 8
    for header in ("rank-1 (all probes)", "min mean cosine", "p50 ms", "TAR@FAR=0.01",
                   "MSE (0-255, common support)"):
        assert header in parser.headers, header
    assert not parser.links, "the report must not load scripts or stylesheets"
    assert len(parser.images) >= 7
    for source in parser.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # The figures say where they came from; the gated formats appear in the parity table.
    assert text.count("Source: ") == len(parser.images)
    assert "pipeline/savedmodel" in text and "Summary" in text
    with open(os.path.join(config.output_dir, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    # metrics.json is written by the report stage, before that stage's own record.
    assert set(metrics["stages"]) == set(summary["stages"]) - {"report"}
    with open(os.path.join(config.output_dir, "report.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "| artefact | gate | result |" in markdown and "](figures/roc.png)" in markdown


def test_a_rerun_skips_finished_stages_and_resumes_a_forgotten_one(demo_run):
    from tf_rgbd.experiments import demo

    config, first, _ = demo_run
    again = demo.run_demo(config, log=lambda line: None)
    assert again["ran"] == [] and again["skipped"] == list(demo.STAGE_NAMES)
    # An interrupted demo: the gallery stage never finished -> it and what follows run.
    demo.reset_stage(config.output_dir, "gallery")
    resumed = demo.run_demo(config, log=lambda line: None)
    assert resumed["ran"] == ["gallery", "related_methods", "report"]
    assert resumed["stages"]["gallery"]["result"]["rank1"] == pytest.approx(
        first["stages"]["gallery"]["result"]["rank1"])
    # Related methods' rows and the claims verdicts appearing later redo only the last stages.
    with open(config.related_results, "w", encoding="utf-8") as handle:
        json.dump({"rows": [{"method": "Method X (test row)", "rank1_average": 0.5}],
                   "source": "written by the test"}, handle)
    with open(config.claims_results, "w", encoding="utf-8") as handle:
        json.dump({"command": "python -m bench.claims --quick", "rows": [
            {"claim": "claim_y", "statement": "a statement", "a": "A", "b": "B",
             "metric": "average rank-1", "difference": 0.01, "ci95": [-0.1, 0.2],
             "verdict": "inconclusive"}]}, handle)
    refreshed = demo.run_demo(config, log=lambda line: None)
    assert refreshed["ran"] == ["related_methods", "report"]
    with open(os.path.join(config.output_dir, "report.html"), encoding="utf-8") as handle:
        text = handle.read()
    assert "Method X (test row)" in text and "claim_y" in text and "inconclusive" in text
    # Rank-1 claims are stored as fractions and shown in points, as in bench/results/claims.md.
    assert "rank-1 (points)" in text and "[-10.00, 20.00]" in text


def test_a_demo_directory_refuses_other_sizes(demo_run):
    from tf_rgbd.experiments import demo

    config, _, _ = demo_run
    with pytest.raises(demo.DemoConfigMismatch, match="depth_steps"):
        demo.run_demo(dataclasses.replace(config, depth_steps=3), log=lambda line: None)


def test_the_quick_preset_is_a_valid_config_and_names_itself():
    from tf_rgbd.experiments import demo

    quick = dataclasses.replace(DemoConfig(), **QUICK)
    assert quick.test_identities >= 12 and DemoConfig().test_identities >= 40
    assert demo.command_line(quick) == "python -m training.demo --quick"
    assert demo.command_line(DemoConfig(depth_steps=7)) == (
        "python -m training.demo --depth_steps=7")


def test_a_gated_out_artefact_is_shown_as_failed_with_its_figures(demo_run):
    from tf_rgbd.experiments import report

    config, _, _ = demo_run
    with open(os.path.join(config.output_dir, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    rows = metrics["stages"]["export"]["result"]["parity"]
    failing = dict(next(row for row in rows if not row.get("reference")),
                   artefact="pipeline/tflite_int8", format="tflite_int8", gate="int8",
                   passed=False, min_mean_cosine=0.8237,
                   failures=["score_embedding: mean cosine 0.8237 < 0.99"])
    rows.append(failing)
    page = report.render_html(report.build_sections(metrics), config.output_dir, "t")
    row_html = page[page.index("<tr class=\"fail\">"):]
    row_html = row_html[:row_html.index("</tr>")]
    assert "pipeline/tflite_int8" in row_html and "FAIL" in row_html
    assert "0.823700" in row_html and "mean cosine 0.8237 &lt; 0.99" in row_html
    assert "1/2 passed" in page


def test_a_collapsed_model_is_flagged_in_the_report(demo_run):
    from tf_rgbd.experiments import report

    config, _, _ = demo_run
    with open(os.path.join(config.output_dir, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    evaluations = metrics["stages"]["recognition"]["result"]["evaluations"]
    assert all(not evaluation["collapsed_branches"] for evaluation in evaluations.values())
    assert "collapsed model" not in report.render_markdown(report.build_sections(metrics), "t")
    key = next(iter(evaluations))
    evaluations[key].update(collapsed_branches=["rgb"], embedding_spread={"rgb": 2e-8})
    text = report.render_markdown(report.build_sections(metrics), "t")
    assert f"`{key}`: the rgb embeddings are (nearly) constant" in text and "2.00e-08" in text
