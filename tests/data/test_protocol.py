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


def test_neutral_probes_are_report_only_and_never_pooled(tmp_path):
    # issue 10, defect 3: Lock3DFace's neutral subset (other frames of the gallery video).
    from tf_rgbd.data.sources import lock3dface

    def frame(subject, code, index, session=1):
        return record(f"{subject}/{subject}_{code}_1/{index:06d}", subject, session=session)

    records = [frame("001", "NU", 1), frame("001", "NU", 2), frame("001", "FE", 1),
               frame("001", "TM", 1, session=2), frame("002", "NU", 1), frame("002", "NU", 5),
               frame("002", "PS", 3)]
    (protocol,) = lock3dface.make_protocols({"test": records})
    assert protocol.report_only == ("neutral",)
    assert protocol.averaged_subsets() == ("expression", "pose", "time")
    assert set(protocol.all_probe_ids()) == {"001/001_FE_1/000001", "001/001_TM_1/000001",
                                             "002/002_PS_1/000003"}
    assert len(protocol.all_probe_ids(include_report_only=True)) == 5
    path = protocol_lib.protocol_path(str(tmp_path), protocol.name)
    protocol_lib.save_protocol(protocol, path)
    assert protocol_lib.load_protocol(path) == protocol
    raw = json.loads(open(path).read())
    assert raw["report_only"] == ["neutral"]
    del raw["report_only"]   # a file written before the field: Lock3DFace's neutral still is
    open(path, "w").write(json.dumps(raw))
    assert protocol_lib.load_protocol(path).report_only == ("neutral",)


def test_finetune_sets_never_hold_a_probe():
    # issue 10, defect 6: per-database DepthNet fine-tuning reads the gallery or the session-1
    # neutral examples, never a probe (neutral probes included).
    records = RECORDS + [record("a/6", "a"), record("b/7", "b", session=2)]
    protocol = protocol_lib.Protocol(
        "l3d", "unit", "test", ("a/0", "b/1"),
        {"neutral": ("a/6",), "expression": ("a/1", "b/2"), "time": ("a/4", "b/7")})
    probes = set(protocol.all_probe_ids(include_report_only=True))
    gallery = protocol_lib.finetune_example_ids(protocol, records, "gallery")
    assert gallery == ("a/0", "b/1")
    neutral = protocol_lib.finetune_example_ids(protocol, records, "session1_neutral")
    assert not probes & set(neutral)
    # Session 1, neutral, unoccluded, not a probe (a/6 is a neutral probe, b/7 session 2).
    assert set(neutral) == {"a/0", "a/2", "b/0", "b/1"}
    with pytest.raises(protocol_lib.ProtocolError, match="gallery"):
        protocol_lib.finetune_example_ids(protocol, records, "probes")
