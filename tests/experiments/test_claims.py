"""The claims benchmark's statistics: paired differences, 95 % t-intervals, verdicts, table.
(The program itself runs end to end in tests/test_build_md.py as ``bench.claims --quick``.)"""
import math

import pytest

from tf_rgbd.experiments import claims


def test_paired_t_interval_matches_a_hand_computation():
    # Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.303.
    row = claims.paired_interval([0.6, 0.7, 0.8], [0.5, 0.5, 0.5], higher_is_better=True)
    half = 4.303 * 0.1 / math.sqrt(3)
    assert row["difference"] == pytest.approx(0.2)
    assert row["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    assert (row["a_mean"], row["b_std"]) == (pytest.approx(0.7), 0.0)
    assert row["verdict"] == "inconclusive"   # 0.2 - 0.248 < 0: three seeds are few


def test_verdicts_and_orientation():
    # Lower is better (MSE): a = 10 < b = 12 on every seed -> holds.
    assert claims.paired_interval([10, 10.5, 9.5], [12, 12.5, 11.4], False)["verdict"] == "holds"
    assert claims.paired_interval([12, 12.5, 11.4], [10, 10.5, 9.5], False)["verdict"] == \
        "does not hold"
    # Spread larger than the gap: the interval spans 0.
    assert claims.paired_interval([0.5, 0.9, 0.4], [0.6, 0.5, 0.5], True)["verdict"] == \
        "inconclusive"
    assert claims.paired_interval([1.0, math.nan], [0.5, 0.5], True)["verdict"] == "not measured"
    with pytest.raises(ValueError, match="2 paired"):
        claims.t_quantile_975(0)


def test_every_claim_is_summarised_and_tabled():
    per_seed = {seed: {name: 0.5 + 0.01 * seed for claim in claims.CLAIMS
                       for name in (claim.a, claim.b)} for seed in (0, 1, 2)}
    for seed in per_seed:
        per_seed[seed][claims.CLAIMS[0].a] = 1.0   # DepthNet MSE higher: does not hold
    rows = claims.summarize(per_seed)
    assert [row["claim"] for row in rows] == [claim.name for claim in claims.CLAIMS]
    assert rows[0]["verdict"] == "does not hold"
    table = claims.format_markdown(rows, [0, 1, 2])
    assert table.count("\n| ") == len(claims.CLAIMS) + 1
    assert "tab8_add_dis" in table and "does not hold" in table


def test_a_claim_subset_trains_only_what_it_needs():
    from tf_rgbd.config.claims import ClaimsConfig

    config = ClaimsConfig(claims=("depthnet_vs_mean_face", "tab7_rgbd_vs_rgb"))
    depth, recognizers = claims.needed_runs(claims.selected_claims(config))
    assert depth == (claims.DEPTHNET,)
    assert recognizers == {"t7_rgb": ("gt",), "t7_rgbd": ("gt",)}
    depth, recognizers = claims.needed_runs(claims.CLAIMS)
    assert set(depth) == set(claims.DEPTH_METHODS)
    assert recognizers == claims.RECOGNIZER_RUNS
    with pytest.raises(ValueError, match="unknown"):
        claims.selected_claims(ClaimsConfig(claims=("tab9",)))


def _write_run(root, values_per_seed, config):
    import json
    import os

    for seed, values in values_per_seed.items():
        os.makedirs(root / f"seed_{seed}")
        (root / f"seed_{seed}" / claims.SEED_RESULTS_FILE).write_text(json.dumps(
            {"seed": seed, "config": config, "values": values}))
    return str(root)


def test_two_runs_are_compared_value_by_value_over_their_common_seeds(tmp_path):
    a = _write_run(tmp_path / "a", {0: {"rank1:x/gt": 0.20, "depth:d": 700.0, "coverage:d": 1.0},
                                    1: {"rank1:x/gt": 0.30, "depth:d": 650.0},
                                    2: {"rank1:x/gt": 0.25, "depth:d": 600.0}},
                   {"sam_normalization": "none", "seeds_field": 1})
    b = _write_run(tmp_path / "b", {0: {"rank1:x/gt": 0.40, "depth:d": 700.0},
                                    1: {"rank1:x/gt": 0.50, "depth:d": 650.0},
                                    3: {"rank1:x/gt": 0.90, "depth:d": 1.0}},
                   {"sam_normalization": "batch", "seeds_field": 1})
    report = claims.compare_runs(a, b, "none", "batch")
    assert report["seeds"] == [0, 1]
    assert report["config_differences"] == {"sam_normalization": ["none", "batch"]}
    rows = {row["value"]: row for row in report["rows"]}
    assert set(rows) == {"rank1:x/gt", "depth:d"}            # coverage is not compared
    rank1 = rows["rank1:x/gt"]
    assert rank1["a_values"] == [20.0, 30.0] and rank1["b_values"] == [40.0, 50.0]
    assert rank1["b_better_by"] == pytest.approx(20.0) and rank1["verdict"] == "B better"
    assert rows["depth:d"]["verdict"] == "identical"
    assert "| rank1:x/gt | 25.0 ± 7.1 | 45.0 ± 7.1 | +20.0 |" in report["markdown"]
    with pytest.raises(FileNotFoundError, match="no seed_"):
        claims.compare_runs(str(tmp_path), b)


def test_only_the_default_measurement_is_written_as_the_claims_table():
    from tf_rgbd.config.claims import ClaimsConfig

    assert claims.results_name(ClaimsConfig(output_dir="/x", num_workers=2), False) == "claims"
    assert claims.results_name(ClaimsConfig(), True) == "claims_quick"
    for changed in (dict(claims=("tab8_add_sa",)), dict(sam_normalization="none"),
                    dict(seeds=(0, 1, 2))):
        assert claims.results_name(ClaimsConfig(**changed), False) == "claims_custom", changed
