"""The identity-preservation experiment end to end at smoke sizes (numbers meaningless), its
resumption and its summary table."""
import json
import math

import pytest

from tests.verification_data import write_identity_dataset
from tf_rgbd.experiments import depth_identity


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth_identity")
    data_dir = write_identity_dataset(str(root / "data"))
    return data_dir, str(root / "work"), depth_identity.run_seed(data_dir, str(root / "work"),
                                                                 seed=0, quick=True)


def test_quick_seed_measures_the_three_sources_on_the_same_pairs(result):
    data_dir, workdir, values = result
    rows = {row["source"]: row for row in values["rows"]}
    assert list(rows) == ["ground truth", depth_identity.DEPTHNET, depth_identity.CGAN]
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["auc"] <= 1.0
        assert row["pairs"] == "12/12"     # 2 test identities x 4 images: C(4,2) x 2 genuine
    assert values["num_pairs"] == 24
    again = depth_identity.run_seed(data_dir, workdir, seed=0, quick=True)
    assert json.dumps(again, sort_keys=True) == json.dumps(values, sort_keys=True)  # reused


def test_summary_means_and_stds_over_seeds(result):
    _, _, values = result
    other = {**values, "rows": [{**row, "accuracy": row["accuracy"] - 0.1}
                                for row in values["rows"]]}
    table = depth_identity.summarize([values, other])[depth_identity.TABLE_TITLE]
    assert [row["source"] for row in table] == [row["source"] for row in values["rows"]]
    first = table[0]
    assert first["n_seeds"] == 2
    assert first["accuracy_mean"] == pytest.approx(values["rows"][0]["accuracy"] - 0.05)
    assert first["accuracy_std"] == pytest.approx(0.1 / math.sqrt(2))
    assert first["auc_std"] == 0.0
