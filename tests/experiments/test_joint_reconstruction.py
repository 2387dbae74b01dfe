"""run_seed / summarize of the joint reconstruction experiment (related-methods interface)."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from tests.joint_data import tiny_joint_dataset
from tf_rgbd.config.joint_reconstruction import JOINT_VARIANTS
from tf_rgbd.experiments import joint_reconstruction as experiment
from tf_rgbd.training import joint_reconstruction_training as joint_training


def test_run_seed_quick_end_to_end_and_reuse(tmp_path):
    workdir = str(tmp_path / "work")
    result = experiment.run_seed(tiny_joint_dataset(), workdir, seed=0, quick=True)
    json.dumps(result)  # JSON-serialisable
    assert [row["variant"] for row in result["rows"]] == list(JOINT_VARIANTS)
    for row in result["rows"]:
        bins = row["rmse_per_yaw_mm"]
        filled = {key: value for key, value in bins.items() if value is not None}
        assert filled and all(math.isfinite(v) and v > 0 for v in filled.values())
        assert all(row["count_per_yaw"][key] == 0 for key in bins if key not in filled)
        assert sum(row["count_per_yaw"].values()) == 8  # the test split: 2 identities x 4
        assert 0.0 <= row["rank1"] <= 1.0 and row["inference_ms_per_image"] > 0
    # Phase I is trained once (by disentangle_id); the other rows start from its encoder.
    assert not (tmp_path / "work" / "single" / "phase1").exists()
    again = experiment.run_seed(tiny_joint_dataset(), workdir, seed=0, quick=True)
    assert again["rows"] == result["rows"]  # finished runs reused
    tables = experiment.summarize([result, again])
    shape_rows = tables["Joint reconstruction: shape RMSE (mm) per yaw"]
    assert [row["n_seeds"] for row in shape_rows] == [2, 2, 2]
    assert shape_rows[0]["mean_std"] == 0.0 and shape_rows[0]["yaw_-90_mean"] is None

    # The runner side (here, to reuse these runs): a longer phase III resumes at its
    # checkpoint, the finished phases I-II are reused, and the final model loads.
    model_dir = os.path.join(workdir, "disentangle_id")
    config = experiment.experiment_config(tiny_joint_dataset(), model_dir, "disentangle_id", 0,
                                          experiment.QUICK_SIZES)
    phase1 = os.path.join(model_dir, "phase1", "joint_model.keras")
    phase1_mtime = os.path.getmtime(phase1)
    summary = joint_training.run_training(dataclasses.replace(config, phase3_steps=2))
    assert summary["phases"]["3"]["start_step"] == 1 and summary["phases"]["3"]["total_steps"] == 2
    assert summary["phases"]["1"]["start_step"] == 0 and os.path.getmtime(phase1) == phase1_mtime
    model, resolved = joint_training.load_joint_model(model_dir)
    assert (resolved.num_classes, resolved.latent_id_dim, model.num_points) == (4, 36, 32)
    assert float(np.abs(np.array(model.mean_shape)).max()) > 1.0  # s-bar (cm) was stored


def test_summarize_means_and_stds_over_seeds():
    def seed(value, rank1):
        row = {"variant": "single", "rmse_per_yaw_mm": {"0": value, "90": None},
               "rmse_mean_mm": value, "rank1": rank1, "tar_at_far_1e-2": None,
               "tar_at_far_1e-3": 0.5, "eer": 0.1, "inference_ms_per_image": 2.0}
        return {"rows": [row]}

    tables = experiment.summarize([seed(1.0, 0.5), seed(3.0, 1.0)])
    shape = tables["Joint reconstruction: shape RMSE (mm) per yaw"][0]
    assert (shape["yaw_0_mean"], shape["yaw_0_std"]) == (2.0, 1.0)
    assert shape["yaw_90_mean"] is None and shape["yaw_-90_mean"] is None
    recognition = tables["Joint reconstruction: recognition with c_Id"][0]
    assert recognition["rank1_mean"] == pytest.approx(0.75)
    assert recognition["tar_at_far_1e-2_mean"] is None and recognition["n_seeds"] == 2
