"""The DMFR experiment end to end in its smoke size (run_seed(quick=True): domains, softmax
pre-training, the five rows through the runner, evaluation), its reuse, and summarize."""
import json
import math

import pytest

from tf_rgbd.experiments import dmfr


@pytest.fixture(scope="module")
def seed_result(tmp_path_factory):
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset

    root = tmp_path_factory.mktemp("dmfr")
    data_dir = str(root / "data")
    build_dataset(BuildConfig(source="synthetic", output_dir=data_dir, image_size=32,
                              num_identities=6, images_per_identity=5, num_shards=1, seed=0),
                  progress=False)
    return data_dir, str(root / "work"), dmfr.run_seed(data_dir, str(root / "work"), seed=0,
                                                       quick=True)


def test_run_seed_quick_trains_and_evaluates_every_row(seed_result):
    data_dir, workdir, result = seed_result
    assert set(result["methods"]) == set(dmfr.METHODS)
    for method, evaluation in result["methods"].items():
        assert set(evaluation["verification"]) == {"general", "cross_pose", "cross_quality"}
        for name, metrics in evaluation["verification"].items():
            for far, tar in metrics["tar_at_far"].items():
                # nan exactly where the impostor pairs cannot resolve the FAR.
                resolvable = metrics["num_impostor"] * float(far) >= 1
                assert math.isnan(tar) != resolvable, (method, name, far, metrics)
                assert math.isnan(tar) or 0.0 <= tar <= 1.0
        similarity = evaluation["similarity"]
        assert -1.0 <= similarity["real_inter"] <= 1.0
        assert ("after_filter_intra" in similarity) == (method == "filter")
    counts = result["pair_counts"]
    assert counts["general"]["first"] == counts["cross_quality"]["second"] > 0
    general = result["methods"]["baseline_real"]["verification"]["general"]
    n = counts["general"]["first"]
    assert general["num_genuine"] + general["num_impostor"] == n * (n - 1) // 2
    # A re-run with the same workdir reuses the finished seed.
    again = dmfr.run_seed(data_dir, workdir, seed=0, quick=True)
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)


def test_summarize_gives_mean_and_std_over_seeds(seed_result):
    _, _, result = seed_result
    tables = dmfr.summarize([result, result])
    tar_rows = tables["DMFR: TAR@FAR (%) per probe set"]
    assert len(tar_rows) == 3 * len(dmfr.METHODS)
    row = tar_rows[0]
    assert row["n_seeds"] == 2 and row["probe_set"] == "general"
    eer = 100 * result["methods"]["baseline_real"]["verification"]["general"]["eer"]
    assert row["eer_mean"] == pytest.approx(eer) and row["eer_std"] == 0.0
    similarity = tables["DMFR Table 1: mean cosine similarity (intra / inter class)"]
    assert [r["method"] for r in similarity] == [dmfr.METHOD_LABELS[m] for m in dmfr.METHODS]
    assert "after_filter_inter_mean" in similarity[-1]
    with pytest.raises(ValueError, match="at least one"):
        dmfr.summarize([])
