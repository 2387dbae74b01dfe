"""DMFR evaluation arithmetic: which pairs each set compares, TAR@FAR / nan on pairs, and the
Table 1 intra/inter-class similarity, against hand counts."""
import math

import numpy as np
import pytest

from tf_rgbd.eval import dmfr as dmfr_eval


def test_pair_sets_compare_the_intended_pairs_and_report_nan_for_unresolvable_fars():
    labels = np.array([0, 0, 1, 1])
    features = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    within = dmfr_eval.PairSet(None, labels, None, labels, all_pairs_within=True)
    assert within.valid_pairs().sum() == 6                  # 4 choose 2
    result = dmfr_eval.verify_pairs(within, features, features, far_targets=(0.25, 1e-2))
    assert (result["num_genuine"], result["num_impostor"]) == (2, 4)
    # Genuine (a,b) 0.8 and (c,d) 0.8; impostors 0, 0.6, 0.6, 0.96. FAR 0.25 allows 1 of 4:
    # threshold = 2nd highest impostor 0.6, both genuine above -> TAR 1. FAR 1e-2 needs 100
    # impostor pairs: nan.
    assert result["tar_at_far"]["0.25"] == 1.0
    strict = dmfr_eval.verify_pairs(within, features, features, far_targets=(0.0,))
    assert math.isnan(strict["tar_at_far"]["0"])            # 4 * 0 < 1: unresolvable
    assert math.isnan(result["tar_at_far"]["0.01"])
    crossed = dmfr_eval.PairSet(None, labels, None, labels, excluded=np.eye(4, dtype=bool))
    assert crossed.valid_pairs().sum() == 12                # an image never meets its copy


def test_intra_and_inter_class_similarity_by_hand():
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    intra, inter = dmfr_eval.intra_inter_similarity(features, np.array([0, 0, 1]))
    assert intra == pytest.approx(0.6)                      # the one same-class pair
    assert inter == pytest.approx((0.0 + 0.8) / 2)          # rows (0, 2) and (1, 2)
