"""The parity gates on their own (numbers in, verdict out) and the rank-1 they use."""
import numpy as np
import pytest

from tf_rgbd.deploy import parity


def _comparisons(max_abs=0.0, cosine=1.0):
    return {"id_rgb": {"max_abs": max_abs, "mean_abs": max_abs / 2, "mean_cosine": cosine,
                       "min_cosine": cosine},
            "score_embedding": {"max_abs": max_abs, "mean_abs": max_abs / 2,
                                "mean_cosine": cosine, "min_cosine": cosine}}


def test_fp32_and_fp16_gates_bound_max_abs():
    assert parity.check_gate("fp32", _comparisons(9e-5)).passed
    verdict = parity.check_gate("fp32", _comparisons(2e-4))
    assert not verdict.passed and "id_rgb: max |delta| 0.0002 > 0.0001" in verdict.failures[0]
    assert parity.check_gate("fp16", _comparisons(9e-3)).passed
    assert not parity.check_gate("fp16", _comparisons(2e-2)).passed
    depth = {"depth": {"max_abs": float("nan"), "mean_abs": 0.0}}
    assert not parity.check_gate("fp32", depth).passed  # NaN never passes


def test_int8_gate_needs_cosine_and_rank1():
    assert parity.check_gate("int8", _comparisons(0.1, 0.995), 75.0, 74.5).passed
    low_cosine = parity.check_gate("int8", _comparisons(0.1, 0.98), 75.0, 75.0)
    assert not low_cosine.passed and "mean cosine 0.9800 < 0.99" in low_cosine.failures[0]
    dropped = parity.check_gate("int8", _comparisons(0.1, 0.999), 75.0, 73.5)
    assert not dropped.passed and "1.50 points below" in dropped.failures[0]
    unmeasured = parity.check_gate("int8", _comparisons(0.1, 0.999), None, None)
    assert not unmeasured.passed and "rank-1 not measured" in unmeasured.failures[0]
    # A better rank-1 than Keras is fine.
    assert parity.check_gate("int8", _comparisons(0.1, 0.999), 50.0, 75.0).passed


def test_int8_gate_of_the_depth_generator():
    good = {"depth": {"max_abs": 0.2, "mean_abs": 0.01},
            "mask": {"max_abs": 0.5, "mean_abs": 0.05, "argmax_agreement": 0.97}}
    assert parity.check_gate("int8", good).passed
    bad = {"depth": {"max_abs": 0.2, "mean_abs": 0.05},
           "mask": {"max_abs": 0.5, "mean_abs": 0.05, "argmax_agreement": 0.9}}
    assert len(parity.check_gate("int8", bad).failures) == 2
    with pytest.raises(ValueError, match="unknown gate"):
        parity.check_gate("int4", good)


def test_compare_outputs_and_rank1():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(6, 4))
    reference /= np.linalg.norm(reference, axis=-1, keepdims=True)
    numbers = parity.compare_outputs({"score_embedding": reference, "depth": reference[..., None]},
                                     {"score_embedding": reference + 1e-6,
                                      "depth": reference[..., None]})
    assert numbers["score_embedding"]["max_abs"] == pytest.approx(1e-6)
    assert numbers["score_embedding"]["mean_cosine"] == pytest.approx(1.0)
    assert numbers["depth"]["max_abs"] == 0.0 and "mean_cosine" not in numbers["depth"]
    with pytest.raises(KeyError, match="lacks outputs"):
        parity.compare_outputs({"id_rgb": reference}, {})
    # Probes equal to their gallery identity's embedding: rank-1 100 %; shuffled labels: 0 %.
    embeddings = np.concatenate([reference[:3], reference[:3]])
    labels = np.array([0, 1, 2, 0, 1, 2])
    ids = ["g0", "g1", "g2", "p0", "p1", "p2"]
    assert parity.rank1_percent(embeddings, labels, ids, ids[:3], ids[3:]) == 100.0
    assert parity.rank1_percent(embeddings, np.array([0, 1, 2, 1, 2, 0]), ids, ids[:3],
                                ids[3:]) == 0.0
    assert parity.rank1_percent(embeddings, labels, ids, ["x"], ids[3:]) is None
    assert parity.gate_for("tflite_int8_dynamic") == "int8"
    assert parity.gate_for("tensorrt", "fp16") == "fp16"


def test_rank1_of_float16_outputs_is_scored_in_full_precision():
    # 40 gallery identities whose unit embeddings differ by less than float16 resolves in a dot
    # product near 1: scored in float16, the tied scores would rank every probe last.
    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    gallery = base + 0.02 * rng.normal(size=(40, 64))
    probes = gallery + 0.002 * rng.normal(size=(40, 64))
    embeddings = np.concatenate([gallery, probes])
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.concatenate([np.arange(40), np.arange(40)])
    ids = [f"g{i}" for i in range(40)] + [f"p{i}" for i in range(40)]
    args = (labels, ids, ids[:40], ids[40:])
    full = parity.rank1_percent(embeddings.astype(np.float32), *args)
    half = parity.rank1_percent(embeddings.astype(np.float16), *args)
    assert full == 100.0
    assert half >= 95.0, half  # float16-rounded embeddings, float64 scores
