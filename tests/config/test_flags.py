"""Flags generated from the config dataclasses: types, defaults, help, precedence, files."""
import dataclasses
import json
import math

import pytest
from absl import flags

from tf_rgbd import config as config_lib
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.data import AugmentConfig, BuildConfig
from tf_rgbd.config.depthnet import DepthEvalConfig, DepthTrainingConfig
from tf_rgbd.config.recognizer import RecognizerEvalConfig, RecognizerExperimentConfig
from tf_rgbd.config.run import RunConfig


def _parse(default, argv, required=()):
    flag_values = flags.FlagValues()
    binding = config_flags.define_config_flags(default, flag_values, required=required)
    flag_values(["program", *argv])
    return binding, flag_values


def test_every_leaf_field_becomes_a_typed_flag_with_the_defaults_and_docstring_help():
    binding, flag_values = _parse(RecognizerExperimentConfig(), [])
    assert binding.config() == RecognizerExperimentConfig()
    # Nested fields are flat flags; the run's per-trainer defaults come from the instance.
    assert flag_values["batch_size"].value == 256 and flag_values["epochs"].value == 20
    assert flag_values["lr_decay_epochs"].value == ["6", "10", "17"]
    assert "initial SGD learning rate" in flag_values["learning_rate"].help
    assert "enum" in flag_values["strategy"].flag_type()
    assert "enum" in flag_values["mixed_precision"].flag_type()
    assert flag_values["jit_compile"].flag_type() == "bool"
    # Fields the program fills are not flags.
    assert "num_classes" not in flag_values and "variant" not in flag_values
    # Every field of every program config has real help text (docstring or metadata).
    for default in (RecognizerExperimentConfig(), DepthTrainingConfig(), BuildConfig(),
                    AugmentConfig(), DepthEvalConfig(), RecognizerEvalConfig()):
        for name, leaf in config_flags.leaf_fields(default).items():
            assert leaf.help, f"{type(default).__name__}: field {name} has no help text"


def test_command_line_values_are_parsed_into_the_nested_config():
    binding, _ = _parse(RecognizerExperimentConfig(), [
        "--data_dir=/d", "--model_dir=/m", "--modalities=rgb,mask", "--batch_size=8",
        "--lr_decay_epochs=2,4", "--sa_max_loss_gap=inf", "--nojit_compile",
        "--mixed_precision=mixed_bfloat16", "--depth_source=generated"])
    config = binding.config()
    assert config.model.modalities == ("rgb", "mask")
    assert config.run.batch_size == 8 and config.run.data_dir == "/d"
    assert config.optimizer.lr_decay_epochs == (2, 4)
    assert math.isinf(config.loss.sa_max_loss_gap)
    assert config.run.mixed_precision == "mixed_bfloat16"
    assert config.depth_source == "generated"


def test_enum_flags_reject_unknown_choices_and_validation_runs():
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(RunConfigHolder(), ["--strategy=cluster"])
    binding, _ = _parse(RecognizerExperimentConfig(), ["--modalities=mask"])
    with pytest.raises(ValueError, match="at least one of rgb/depth"):
        binding.config()
    binding, _ = _parse(RunConfigHolder(), ["--run_eagerly", "--jit_compile"])
    with pytest.raises(ValueError, match="run_eagerly and jit_compile"):
        binding.config()


@dataclasses.dataclass(frozen=True)
class RunConfigHolder:
    """A config holding a run.

    Attributes:
      run: the run.
    """

    run: RunConfig = RunConfig()


def test_config_file_then_flags_then_overrides(tmp_path):
    saved = dataclasses.replace(
        DepthTrainingConfig(),
        run=dataclasses.replace(DepthTrainingConfig().run, data_dir="/from_file",
                                model_dir="/m", batch_size=4, seed=7))
    path = tmp_path / "config.json"
    config_lib.save_json(saved, str(path))
    # The saved config.json re-runs the run exactly.
    binding, _ = _parse(DepthTrainingConfig(), [f"--config_file={path}"])
    assert binding.config() == saved
    # A flag given on the command line wins over the file; --override wins over both.
    binding, _ = _parse(DepthTrainingConfig(), [
        f"--config_file={path}", "--batch_size=8", "--override=seed=3",
        "--override=model.base_filters=4", "--override=arch=cgan"])
    config = binding.config()
    assert (config.run.batch_size, config.run.seed, config.run.data_dir) == (8, 3, "/from_file")
    assert (config.model.base_filters, config.model.arch) == (4, "cgan")


def test_a_preset_replaces_the_defaults_and_given_flags_win_over_it():
    from tf_rgbd.config.claims import QUICK, ClaimsConfig

    binding, _ = _parse(ClaimsConfig(), ["--seeds=3,4", "--override=depth_steps=5"])
    config = binding.config(preset=QUICK)
    assert config.seeds == (3, 4) and config.depth_steps == 5        # given: they win
    assert config.num_identities == QUICK["num_identities"]          # not given: the preset
    assert binding.config().num_identities == ClaimsConfig().num_identities


def test_yaml_config_files_and_partial_files_merge_over_the_defaults(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text("model:\n  backbone: tiny\n  image_size: 32\nrun:\n  data_dir: /y\n"
                    "  model_dir: /m\n", encoding="utf-8")
    binding, _ = _parse(RecognizerExperimentConfig(), [f"--config_file={path}"])
    config = binding.config()
    assert (config.model.backbone, config.model.image_size, config.run.data_dir) == (
        "tiny", 32, "/y")
    assert config.loss == RecognizerExperimentConfig().loss


def test_bad_files_and_overrides_name_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"run": {"batch_sise": 3}}), encoding="utf-8")
    binding, _ = _parse(DepthTrainingConfig(), [f"--config_file={bad}"])
    with pytest.raises(ValueError, match="batch_sise"):
        binding.config()
    other = tmp_path / "other.json"
    config_lib.save_json(BuildConfig(output_dir="/o"), str(other))
    binding, _ = _parse(DepthTrainingConfig(), [f"--config_file={other}"])
    with pytest.raises(ValueError, match="holds a BuildConfig"):
        binding.config()
    binding, _ = _parse(DepthTrainingConfig(), ["--override=no_such_field=1"])
    with pytest.raises(ValueError, match="no_such_field"):
        binding.config()
    binding, _ = _parse(DepthTrainingConfig(), ["--override=batch_size=many"])
    with pytest.raises(ValueError, match="batch_size=many"):
        binding.config()
    binding, _ = _parse(DepthTrainingConfig(), ["--config_file=/no/such/file.json"])
    with pytest.raises(FileNotFoundError, match="/no/such/file.json"):
        binding.config()


def test_required_fields_may_come_from_the_file(tmp_path):
    binding, _ = _parse(DepthTrainingConfig(), [], required=("data_dir", "model_dir"))
    with pytest.raises(ValueError, match="--data_dir, --model_dir"):
        binding.config()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"run": {"data_dir": "/d", "model_dir": "/m"}}),
                    encoding="utf-8")
    binding, _ = _parse(DepthTrainingConfig(), [f"--config_file={path}"],
                        required=("data_dir", "model_dir"))
    assert binding.config().run.data_dir == "/d"


def test_no_negated_boolean_names_and_no_flag_name_clash():
    for default in (RecognizerExperimentConfig(), DepthTrainingConfig(), BuildConfig(),
                    AugmentConfig(), DepthEvalConfig(), RecognizerEvalConfig()):
        names = config_flags.leaf_fields(default)
        assert not [name for name in names if name.startswith("no_")], type(default).__name__

    @dataclasses.dataclass(frozen=True)
    class Clashing:
        """Two nested configs with the same field name.

        Attributes:
          first: a run.
          second: another run.
        """

        first: RunConfig = RunConfig()
        second: RunConfig = RunConfig()

    with pytest.raises(ValueError, match="appear twice"):
        config_flags.leaf_fields(Clashing())
