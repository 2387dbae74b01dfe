"""TAR@FAR, ROC and EER against hand-made scores."""
import math

import numpy as np
import pytest

from tf_rgbd.metrics import verification

GENUINE = np.array([0.9, 0.8, 0.7, 0.2])
IMPOSTOR = np.array([0.85, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.1, 0.05, 0.0])


def test_tar_at_far_by_hand():
    results = verification.tar_at_far(GENUINE, IMPOSTOR, (1e-2, 1e-1, 0.2, 0.5))
    # 10 impostors: FAR 1e-2 would need 100 -> nan, never an invented number.
    assert math.isnan(results[1e-2])
    # FAR 0.1: one impostor may pass -> threshold = 2nd highest impostor (0.6): 0.9, 0.8, 0.7.
    assert results[0.1] == pytest.approx(0.75)
    # FAR 0.2: threshold 0.5 -> same three genuine pairs.
    assert results[0.2] == pytest.approx(0.75)
    # FAR 0.5: threshold = 6th highest impostor 0.3 -> 0.2 still rejected.
    assert results[0.5] == pytest.approx(0.75)
    assert verification.tar_at_far(GENUINE, IMPOSTOR, (0.01,))[0.01] != 0.0  # nan, not 0


def test_pairs_from_a_score_matrix():
    scores = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4]])
    genuine, impostor = verification.pair_scores(scores, [0, 1], [0, 1, 2])
    np.testing.assert_allclose(sorted(genuine), [0.8, 0.9])
    np.testing.assert_allclose(sorted(impostor), [0.1, 0.2, 0.3, 0.4])
    result = verification.verify(scores, [0, 1], [0, 1, 2], far_targets=(0.25, 1e-3))
    assert (result.num_genuine, result.num_impostor) == (2, 4)
    assert result.tar_at_far[0.25] == 1.0 and math.isnan(result.tar_at_far[1e-3])
    assert result.eer == 0.0 and result.auc == pytest.approx(1.0)
    assert result.to_dict()["tar_at_far"]["0.25"] == 1.0


def test_roc_and_eer():
    far, tar, thresholds = verification.roc_curve([0.9, 0.6, 0.4], [0.7, 0.5, 0.3, 0.1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(far, [0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    # FRR = 1 - TAR crosses FAR between threshold 0.6 (FAR .25, FRR 1/3) and 0.5 (.5, 1/3):
    # d = FAR - FRR goes -1/12 -> +1/6, so EER = 0.25 + (1/12)/(1/4) * 0.25 = 1/3.
    assert verification.equal_error_rate([0.9, 0.6, 0.4], [0.7, 0.5, 0.3, 0.1]) == \
        pytest.approx(1 / 3)
    assert verification.equal_error_rate([0.9, 0.8], [0.1, 0.2]) == 0.0
    with pytest.raises(ValueError, match="impostor"):
        verification.roc_curve([0.5], [])


def test_table_prints_nan_for_unmeasurable_far():
    result = verification.verify(np.array([[0.9, 0.1], [0.2, 0.8]]), [0, 1], [0, 1])
    table = verification.format_verification_table({"RGB": result})
    assert "TAR@1e-05" in table.splitlines()[0]
    assert table.splitlines()[2].split()[1] == "nan"


def test_auc_counts_a_tie_as_one_half_and_matches_the_pair_count_definition():
    assert verification.area_under_roc([0.5], [0.5]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 60).round(1)
    # AUC = P(genuine > impostor) + P(tie) / 2 over every genuine-impostor pair.
    greater = (genuine[:, None] > impostor[None, :]).mean()
    ties = (genuine[:, None] == impostor[None, :]).mean()
    assert verification.area_under_roc(genuine, impostor) == pytest.approx(greater + ties / 2)
