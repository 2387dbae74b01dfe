"""Schema v1: encode/decode round trips and the validation that guards writers."""
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.data import schema


def test_round_trip_keeps_every_field():
    example = helpers.make_face_example(3, size=24, label=5, expression="smile", yaw_deg=-31.5,
                                        pitch_deg=4.0, roll_deg=2.5, occlusion="hand", session=2,
                                        identity_coeffs=np.arange(4, dtype=np.float32),
                                        expression_coeffs=np.ones(2, np.float32))
    decoded = schema.decode_example_numpy(schema.encode_example(example))
    np.testing.assert_array_equal(decoded.rgb, example.rgb)
    np.testing.assert_array_equal(decoded.mask, example.mask)
    # 0.1 mm quantisation.
    np.testing.assert_allclose(decoded.depth, example.depth, atol=0.051)
    np.testing.assert_allclose(decoded.landmarks5, example.landmarks5, atol=1e-5)
    np.testing.assert_allclose(decoded.identity_coeffs, [0, 1, 2, 3])
    for key in ("example_id", "label", "subject", "dataset", "domain", "expression", "occlusion",
                "session"):
        assert getattr(decoded, key) == getattr(example, key), key
    assert decoded.yaw_deg == pytest.approx(-31.5)
    assert decoded.neutral_depth is None and decoded.gt_depth is None


def test_missing_modalities_are_flagged_and_parse_in_graph():
    example = helpers.make_face_example(1, with_depth=False, with_mask=False, landmarks5=None)
    parsed = schema.parse_example(tf.constant(schema.encode_example(example)))
    assert int(parsed["has_depth"]) == 0 and int(parsed["has_mask"]) == 0
    assert parsed["depth"].numpy() == b"" and parsed["mask"].numpy() == b""
    np.testing.assert_array_equal(parsed["landmarks5"].numpy(), -np.ones(10))
    assert parsed["identity_coeffs"].shape == (0,)
    decoded = schema.decode_example_numpy(schema.encode_example(example))
    assert decoded.depth is None and decoded.mask is None and decoded.landmarks5 is None


def test_valid_depth_never_quantises_to_no_data_and_far_depth_changes_scale():
    example = helpers.make_face_example(0, size=8)
    depth = np.zeros((8, 8), np.float32)
    depth[0, 0] = 0.01          # far below one 0.1 mm step: must stay "valid"
    depth[1, 1] = 9000.0        # beyond 6553.5 mm: the scale grows so uint16 does not overflow
    decoded = schema.decode_example_numpy(schema.encode_example(
        helpers.make_face_example(0, size=8, depth=depth)))
    assert decoded.depth[0, 0] > 0
    assert decoded.depth[1, 1] == pytest.approx(9000.0, rel=1e-3)
    assert decoded.depth[2, 2] == 0
    del example


@pytest.mark.parametrize("overrides, message", [
    (dict(depth=np.full((32, 32), np.nan, np.float32)), "non-finite"),
    (dict(depth=np.ones((20, 16), np.float32)), "does not match the RGB"),
    (dict(mask=np.full((32, 32), 7, np.uint8)), "class indices"),
    (dict(rgb=np.zeros((32, 32), np.uint8)), "uint8 \\[H, W, 3\\]"),
    (dict(domain="fake"), "domain"),
    (dict(label=-1), "label"),
    (dict(depth=None, neutral_depth=np.ones((32, 32), np.float32)), "without depth"),
])
def test_invalid_examples_raise_clear_errors(overrides, message):
    with pytest.raises(schema.SchemaError, match=message):
        schema.encode_example(helpers.make_face_example(0, size=32, **overrides))


def test_normalized_depth_units_round_trip_with_gt_depth():
    depth = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    example = helpers.make_face_example(0, size=8, depth=depth, depth_units="normalized",
                                        domain="generated", gt_depth=depth[::-1].copy())
    decoded = schema.decode_example_numpy(schema.encode_example(example))
    assert decoded.depth_units == "normalized"
    np.testing.assert_allclose(decoded.depth, depth, atol=1e-4)
    np.testing.assert_allclose(decoded.gt_depth, depth[::-1], atol=1e-4)
    with pytest.raises(schema.SchemaError, match="normalized depth"):
        schema.encode_example(helpers.make_face_example(0, size=8, depth=depth * 2,
                                                        depth_units="normalized"))


def test_hand_written_wire_format_equals_tensorflow_protos():
    """The TF-free encoder is byte-compatible with tf.train.Example (and deterministic)."""
    example = helpers.make_face_example(9, size=12, label=3, yaw_deg=-12.5, session=2,
                                        identity_coeffs=np.array([-1.5, 0.0, 2.25], np.float32))
    serialized = schema.encode_example(example)
    proto = tf.train.Example.FromString(serialized)
    feature = proto.features.feature
    assert feature["label"].int64_list.value == [3]
    assert feature["session"].int64_list.value == [2]
    assert feature["yaw_deg"].float_list.value == [-12.5]
    assert list(feature["identity_coeffs"].float_list.value) == [-1.5, 0.0, 2.25]
    assert feature["expression_coeffs"].WhichOneof("kind") == "float_list"
    assert len(feature["expression_coeffs"].float_list.value) == 0
    assert feature["example_id"].bytes_list.value == [b"test/00009"]
    # Negative int64 values use protobuf's 10-byte two's complement varint.
    assert tf.train.Example.FromString(schema._serialize_example({"x": schema._int(-7)})
                                       ).features.feature["x"].int64_list.value == [-7]
    # Re-serialising with sorted keys through TF's own protobuf gives the same bytes.
    rebuilt = {key: value.SerializeToString() for key, value in feature.items()}
    assert schema._serialize_example(rebuilt) == serialized
    assert schema.encode_example(example) == serialized


def test_encoding_does_not_import_tensorflow():
    import subprocess
    import sys
    code = ("import sys, numpy as np; from tf_rgbd.data import schema, writer; "
            "schema.encode_example(schema.FaceExample('a', np.zeros((4, 4, 3), np.uint8), 0, 's',"
            " 'd')); print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-2000:]
