"""Rank-1 / CMC against hand-made score matrices."""
import math

import numpy as np
import pytest

from tf_rgbd.metrics import identification


# 3 probes x 4 gallery entries; gallery identities [0, 1, 2, 2] (identity 2 enrolled twice).
SCORES = np.array([[0.9, 0.1, 0.3, 0.2],    # probe of 0: correct first -> rank 1
                   [0.8, 0.5, 0.7, 0.1],    # probe of 1: identities 0 (0.8) and 2 (0.7) beat it
                   [0.6, 0.7, 0.2, 0.65]])  # probe of 2: identity 2 scores max(0.2, 0.65) = 0.65
GALLERY = [0, 1, 2, 2]
PROBES = [0, 1, 2]


def test_ranks_use_the_best_gallery_entry_per_identity():
    ranks = identification.true_identity_ranks(SCORES, PROBES, GALLERY)
    np.testing.assert_array_equal(ranks, [1, 3, 2])


def test_cmc_and_rank1():
    curve = identification.cmc_curve(SCORES, PROBES, GALLERY, max_rank=4)
    np.testing.assert_allclose(curve, [1 / 3, 2 / 3, 1.0, 1.0])
    result = identification.identify(SCORES, PROBES, GALLERY, max_rank=3)
    assert result.rank1 == pytest.approx(1 / 3)
    assert result.num_identities == 3 and result.num_probes == 3
    assert result.cmc == pytest.approx((1 / 3, 2 / 3, 1.0))


def test_ties_count_against_the_probe():
    ranks = identification.true_identity_ranks(np.array([[0.5, 0.5, 0.4]]), [1], [0, 1, 2])
    assert ranks.tolist() == [2]


def test_collapsed_embeddings_score_worst_not_best():
    # A model whose embeddings collapsed to one point gives every pair the same score.
    constant = np.full((4, 3), 0.7)
    ranks = identification.true_identity_ranks(constant, [0, 1, 2, 0], [0, 1, 2])
    assert ranks.tolist() == [3, 3, 3, 3]
    assert identification.identify(constant, [0, 1, 2, 0], [0, 1, 2]).rank1 == 0.0


def test_non_finite_scores_are_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        identification.true_identity_ranks(np.array([[np.nan, 0.1]]), [0], [0, 1])


def test_unenrolled_probe_identity_is_an_error():
    with pytest.raises(ValueError, match="not in the gallery"):
        identification.true_identity_ranks(np.zeros((1, 2)), [7], [0, 1])
    with pytest.raises(ValueError, match="shape"):
        identification.true_identity_ranks(np.zeros((2, 2)), [0], [0, 1])


def test_average_and_table():
    results = {name: identification.identify(SCORES, PROBES, GALLERY)
               for name in ("expression", "pose")}
    assert identification.average_rank1(results) == pytest.approx(1 / 3)
    assert math.isnan(identification.average_rank1({}))
    table = identification.format_identification_table(
        {"RGB": {"expression": 0.5, "pose": 0.25, "average": 0.375}},
        ["expression", "pose", "occlusion"])
    lines = table.splitlines()
    assert "expression" in lines[0] and "average" in lines[0]
    assert lines[2].split()[1:] == ["50.00", "25.00", "n/a", "37.50"]


def test_neutral_subset_is_reported_but_not_averaged():
    # issue 10, defect 3: Lock3DFace's neutral probes (near-duplicates of the gallery) never
    # enter the average (the paper's = mean of expression, pose, occlusion, time).
    perfect = identification.identify(np.eye(2), [0, 1], [0, 1])
    wrong = identification.identify(np.fliplr(np.eye(2)), [0, 1], [0, 1])
    results = {"neutral": perfect, "expression": wrong, "pose": perfect, "occlusion": wrong,
               "time": wrong}
    assert identification.average_rank1(results, exclude=("neutral",)) == pytest.approx(0.25)
