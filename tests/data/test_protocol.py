"""Protocol files: construction from example records, validation, round trip."""
import json

import pytest

from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data.writer import ExampleRecord


def record(example_id, subject, expression="neutral", yaw=0.0, occlusion="none", session=1):
    return ExampleRecord(example_id=example_id, label=0, subject=subject, domain="synthetic",
                         expression=expression, occlusion=occlusion, session=session,
                         yaw_deg=yaw, pitch_deg=0.0, roll_deg=0.0, has_depth=True,
                         has_mask=True, shard="x", index_in_shard=0)


RECORDS = [
    record("a/0", "a"), record("a/1", "a", expression="smile"), record("a/2", "a", yaw=45.0),
    record("a/3", "a", occlusion="hand"), record("a/4", "a", session=2),
    record("a/5", "a", expression="smile", yaw=-60.0),
    record("b/0", "b", yaw=20.0), record("b/1", "b"), record("b/2", "b", expression="frown"),
    record("c/0", "c", expression="smile"),     # no gallery image: left out
]


def test_lock3dface_style_protocol_subsets():
    protocol = protocol_lib.lock3dface_style_protocol(RECORDS, "unit")
    assert protocol.gallery == ("a/0", "b/1")
    assert protocol.probes == {"expression": ("a/1", "b/2"), "pose": ("a/2", "a/5"),
                               "occlusion": ("a/3",), "time": ("a/4",)}
    assert "c" in protocol.description
    protocol_lib.validate_protocol(protocol, known_ids=[r.example_id for r in RECORDS],
                                   subject_of={r.example_id: r.subject for r in RECORDS})


def test_save_load_round_trip_and_validation_errors(tmp_path):
    protocol = protocol_lib.lock3dface_style_protocol(RECORDS, "unit")
    path = protocol_lib.protocol_path(str(tmp_path), protocol.name)
    protocol_lib.save_protocol(protocol, path)
    assert protocol_lib.load_protocol(path) == protocol
    assert protocol_lib.list_protocols(str(tmp_path)) == ["lock3dface_style"]
    with pytest.raises(protocol_lib.ProtocolError, match="not in split"):
        protocol_lib.load_protocol(path, known_ids=["a/0"])
    raw = json.loads(open(path).read())
    raw["probes"]["pose"].append("a/0")
    open(path, "w").write(json.dumps(raw))
    with pytest.raises(protocol_lib.ProtocolError, match="shares ids with the gallery"):
        protocol_lib.load_protocol(path)
    with pytest.raises(protocol_lib.ProtocolError, match="not found"):
        protocol_lib.load_protocol(str(tmp_path / "missing.json"))
    stranger = protocol_lib.Protocol("p", "unit", "test", ("a/0",), {"x": ("b/2",)})
    with pytest.raises(protocol_lib.ProtocolError, match="missing from the gallery"):
        protocol_lib.validate_protocol(stranger, subject_of={"a/0": "a", "b/2": "b"})
