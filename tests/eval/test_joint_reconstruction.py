"""Shape RMSE per yaw bin on hand-made cases, and c_Id recognition through the project's
scoring."""
import math

import numpy as np
import pytest

from tf_rgbd.data.protocol import Protocol
from tf_rgbd.eval import joint_reconstruction as joint_eval


@pytest.mark.parametrize("yaw, centre", [(0.0, 0), (4.9, 0), (5.0, 10), (-5.0, -10),
                                         (-14.9, -10), (44.0, 40), (95.0, 90), (-120.0, -90)])
def test_yaw_bin(yaw, centre):
    assert joint_eval.yaw_bin(yaw) == centre


def test_rmse_per_yaw_bin_hand_made_case():
    rmse = [1.0, 3.0, 2.0, math.nan, 4.0]
    yaw = [0.0, 2.0, -31.0, 10.0, 89.0]
    table = joint_eval.rmse_per_yaw_bin(rmse, yaw)
    assert list(table["bins"]) == [str(c) for c in range(-90, 91, 10)]
    assert table["bins"]["0"] == 2.0 and table["bins"]["-30"] == 2.0
    assert table["bins"]["90"] == 4.0
    assert table["bins"]["10"] is None and table["counts"]["10"] == 0  # NaN only: empty
    assert table["bins"]["-90"] is None and table["counts"]["0"] == 2
    assert sum(v is not None for v in table["bins"].values()) == 3
    assert table["mean"] == pytest.approx(8.0 / 3.0)      # over the non-empty bins
    assert table["mean_examples"] == pytest.approx(2.5)   # over the finite examples
    assert table["no_valid_points"] == 1
    assert joint_eval.rmse_per_yaw_bin([], [])["mean"] is None


def test_recognition_metrics_of_c_id():
    ids = np.array(["g0", "g1", "p0", "p1"])
    features = np.array([[1, 0], [0, 1], [1, 0.1], [1, 0.2]], np.float32)  # p1 looks like g0
    predicted = {"example_ids": ids, "labels": np.array([0, 1, 0, 1]), "features": features}
    protocol = Protocol(name="t", dataset="d", split="test", gallery=("g0", "g1"),
                        probes={"all": ("p0", "p1")})
    metrics = joint_eval.recognition_metrics(predicted, protocol)
    assert metrics["rank1"] == 0.5 and metrics["rank1_per_subset"] == {"all": 0.5}
    assert metrics["num_genuine"] == 2 and metrics["num_impostor"] == 2
    assert metrics["tar_at_far"] == {"0.01": None, "0.001": None}  # 2 impostors: unmeasurable
    assert 0.0 <= metrics["eer"] <= 1.0
