"""The related-methods benchmark's own logic (each method's run_seed is tested beside it; the
program runs end to end in tests/test_build_md.py)."""
import json

import pytest

from tf_rgbd.config.related import RelatedMethodsConfig
from tf_rgbd.experiments import related_methods


def test_markdown_table_keeps_every_column_and_marks_missing_cells():
    text = related_methods.markdown_table([{"row": "a", "rmse_mm": 1.23456, "n": 3},
                                           {"row": "b", "tar": float("nan")}])
    lines = text.splitlines()
    assert lines[0] == "| row | rmse_mm | n | tar |"
    assert lines[2] == "| a | 1.235 | 3 |  |" and lines[3] == "| b |  |  | nan |"


def test_config_refuses_unknown_methods_and_repeated_seeds():
    with pytest.raises(ValueError, match="unknown"):
        RelatedMethodsConfig(methods=("dmfr", "bogus"))
    with pytest.raises(ValueError, match="distinct"):
        RelatedMethodsConfig(seeds=(0, 0))


def test_a_finished_seed_is_read_back_only_for_the_same_data(tmp_path, monkeypatch):
    config = RelatedMethodsConfig(output_dir=str(tmp_path), methods=("dmfr",))
    calls = []

    def fake_run_seed(data_dir, workdir, seed, quick=False):
        calls.append((seed, quick))
        return {"seed": seed}

    monkeypatch.setattr(related_methods.METHOD_MODULES["dmfr"], "run_seed", fake_run_seed)
    first = related_methods.run_method_seed(config, "dmfr", "/data", 1)
    again = related_methods.run_method_seed(config, "dmfr", "/data", 1)
    assert calls == [(1, False)] and again["figures"] == first["figures"] == {"seed": 1}
    other = RelatedMethodsConfig(output_dir=str(tmp_path), methods=("dmfr",), image_size=32)
    related_methods.run_method_seed(other, "dmfr", "/data", 1)
    assert calls == [(1, False), (1, False)]
    saved = json.loads((tmp_path / "dmfr" / "seed_1" / "seed_results.json").read_text())
    assert saved["data"]["image_size"] == 32
