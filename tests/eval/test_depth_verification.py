"""Depth-verification evaluation on hand-made cases whose answers are known."""
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.eval import depth_verification as dv


def test_threshold_is_chosen_for_the_best_accuracy():
    # Scores (-distance): genuine -0.1, -0.2, -0.6; impostor -0.5, -0.9, -1.0. Accepting
    # > -0.55 gets 4 of 6 right, > -0.75 (midpoint of -0.9 and -0.6) 5 of 6: the best.
    scores = [-0.1, -0.2, -0.6, -0.5, -0.9, -1.0]
    same = [1, 1, 1, 0, 0, 0]
    assert dv.choose_threshold(scores, same) == pytest.approx(-0.75)
    summary = dv.verification_summary(scores, same, -0.75)
    assert summary["accuracy"] == pytest.approx(5 / 6)
    # AUC: 8 of the 9 genuine/impostor orderings are right.
    assert summary["auc"] == pytest.approx(8 / 9)
    assert (summary["num_genuine"], summary["num_impostor"]) == (3, 3)


def test_prepare_depth_is_one_function_for_every_source():
    raw = tf.constant(np.array([-0.5, 0.0, 0.001, 0.5, 1.4], np.float32).reshape(1, 1, 5, 1))
    prepared = dv.prepare_depth(tf.image.resize(raw, [16, 16], method="nearest"), 16).numpy()
    # Clipped to [0, 1], values below MIN_VALID_PREDICTION (0.5/255) are background.
    np.testing.assert_allclose(np.unique(prepared), [0.0, 0.5, 1.0])
    assert dv.prepare_depth(tf.ones([2, 32, 32, 1]) * 0.7, 16).shape == (2, 16, 16, 1)


def _faces(values, size=16):
    return np.stack([np.full((size, size, 1), value, np.float32) for value in values])


def test_known_answers_perfect_ground_truth_and_identity_free_generated_depth():
    # Embedding = mean depth: identity k's ground truth has mean 0.2 + 0.3 k (+ 0 / 0.01).
    ids = [f"e{i}" for i in range(6)]
    labels = [0, 0, 1, 1, 2, 2]
    truth = _faces([0.2, 0.21, 0.5, 0.51, 0.8, 0.81])
    flat = _faces([0.5] * 6)                     # a generator that lost the identity
    shuffled = truth[[2, 3, 4, 5, 0, 1]]         # depth of the wrong identity
    pairs = [(ids[a], ids[b], int(labels[a] == labels[b]))
             for a in range(6) for b in range(a + 1, 6)]
    validation = (["v0", "v1", "v2", "v3"], _faces([0.3, 0.31, 0.7, 0.71]),
                  [("v0", "v1", 1), ("v2", "v3", 1), ("v0", "v2", 0), ("v1", "v3", 0)])
    report = dv.evaluate_sources(lambda depth: depth.mean(axis=(1, 2)),
                                 {dv.GROUND_TRUTH: (ids, truth), "flat": (ids, flat),
                                  "shuffled": (ids, shuffled)}, pairs, validation)
    # Validation: genuine distance 0.01, impostor 0.4: the threshold (-0.205) lies between;
    # the test impostors are >= 0.29 apart, the genuine pairs 0.01.
    assert report["threshold"] == pytest.approx(-0.205) and report["validation"]["accuracy"] == 1.0
    gt = report["sources"][dv.GROUND_TRUTH]
    assert (gt["accuracy"], gt["auc"], gt["eer"]) == (1.0, 1.0, 0.0)
    flat_row = report["sources"]["flat"]
    # Every distance 0: every pair accepted (3 genuine of 15 pairs), chance AUC, EER 1/2.
    assert flat_row["accuracy"] == pytest.approx(3 / 15)
    assert flat_row["auc"] == pytest.approx(0.5) and flat_row["eer"] == pytest.approx(0.5)
    # Wrong identities but their pairing structure kept: still separable (what verification
    # measures is that same-identity pairs stay close).
    assert report["sources"]["shuffled"]["auc"] == 1.0
    rows = dv.table_rows(report)
    assert [row["source"] for row in rows] == [dv.GROUND_TRUTH, "flat", "shuffled"]
    reordered = {**report, "sources": dict(sorted(report["sources"].items()))}
    assert dv.table_rows(reordered)[0]["source"] == dv.GROUND_TRUTH
    assert "ground truth" in dv.format_table(report)
