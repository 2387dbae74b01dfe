"""The SQLite gallery: enrol / search / verify / remove, model checks, thresholds from a
protocol, and faults injected for real (kill -9 mid-enrolment, a full disk)."""
import math
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tf_rgbd import io_utils
from tf_rgbd.deploy import gallery as gallery_lib
from tf_rgbd.deploy.gallery import EnrolledFace, Gallery, ModelIdentity
from tf_rgbd.metrics import verification

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)
MODEL = ModelIdentity("ab" * 32, {"score_embedding": 8, "id_rgb": 4, "id_depth": 4}, "test model")


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _face(path, rgb, depth, depth_measured=False):
    rgb, depth = _unit(rgb), _unit(depth)
    return EnrolledFace(path, {"id_rgb": rgb, "id_depth": depth,
                               "score_embedding": np.concatenate([rgb, depth]) / math.sqrt(2)},
                        depth_measured=depth_measured)


def test_enrol_search_verify_remove_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    centres = {name: (rng.normal(size=4), rng.normal(size=4)) for name in "abcde"}
    path = str(tmp_path / "g.db")
    with Gallery(path, MODEL) as gallery:
        for name, (rgb, depth) in centres.items():
            faces = [_face(f"{name}{i}.jpg", rgb + 0.1 * rng.normal(size=4),
                           depth + 0.1 * rng.normal(size=4), depth_measured=i == 0)
                     for i in range(3)]
            assert gallery.enroll(name, faces) == 3
        assert gallery.enroll("a", [_face("a9.jpg", *centres["a"])]) == 1
        assert [(s.name, s.num_faces, s.num_enrolments) for s in gallery.subjects()] == [
            ("a", 4, 2), ("b", 3, 1), ("c", 3, 1), ("d", 3, 1), ("e", 3, 1)]
        probes = [_face("p.jpg", *centres[name]) for name in "ecb"]
        fused = np.stack([p.embeddings["score_embedding"] for p in probes])
        results = gallery.search(fused, top_k=3)
        assert [r[0].subject for r in results] == list("ecb")
        # Subject score = best cosine over its faces, checked against brute force; the fused
        # score is the mean of the branch cosines.
        rows = sqlite3.connect(path).execute(
            "SELECT s.name, e.score_embedding, e.id_rgb, e.id_depth FROM embeddings e JOIN "
            "subjects s ON s.id = e.subject_id").fetchall()
        for probe, matches in zip(probes, results):
            for match in matches:
                best = max(float(np.frombuffer(blob, "<f4") @ probe.embeddings["score_embedding"])
                           for name, blob, _, _ in rows if name == match.subject)
                assert match.score == pytest.approx(best, abs=1e-6)
                branch_mean = max(
                    0.5 * (np.frombuffer(r, "<f4") @ probe.embeddings["id_rgb"]
                           + np.frombuffer(d, "<f4") @ probe.embeddings["id_depth"])
                    for name, _, r, d in rows if name == match.subject)
                assert match.score == pytest.approx(branch_mean, abs=1e-5)
            assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
        rgb_only = gallery.search(probes[0].embeddings["id_rgb"], top_k=10, method="rgb")[0]
        assert len(rgb_only) == 5 and rgb_only[0].subject == "e"

        with pytest.raises(gallery_lib.GalleryError, match="no fused verification threshold"):
            gallery.verify("e", fused[0])
        # Threshold at a target FAR on a protocol: probes x gallery with known labels.
        labels = np.repeat(np.arange(5), 3)
        gallery_set = np.stack([_face("", *[c + 0.1 * rng.normal(size=4) for c in centres[n]])
                                .embeddings["score_embedding"] for n in "abcde" for _ in range(3)])
        probe_set = np.stack([_face("", *[c + 0.1 * rng.normal(size=4) for c in centres[n]])
                              .embeddings["score_embedding"] for n in "abcde" for _ in range(3)])
        chosen = gallery_lib.choose_threshold(probe_set, labels, gallery_set, labels, 0.1,
                                              protocol="toy")
        genuine, impostor = verification.pair_scores(probe_set @ gallery_set.T, labels, labels)
        assert chosen.measured_far <= 0.1 and chosen.num_impostor == len(impostor) == 180
        assert chosen.tar == pytest.approx(verification.tar_at_far(genuine, impostor, [0.1])[0.1])
        gallery.set_threshold(chosen)
        with pytest.raises(ValueError, match="impostor pairs"):
            gallery_lib.choose_threshold(probe_set, labels, gallery_set, labels, 1e-4)
    with Gallery(path, MODEL, create=False) as gallery:
        assert gallery.threshold("fused") == chosen
        decision = gallery.verify("e", fused[0])
        assert decision.accepted and decision.score == pytest.approx(results[0][0].score)
        assert gallery.remove("b") == 3
        assert [s.name for s in gallery.subjects()] == list("acde")
        assert "b" not in [m.subject for m in gallery.search(fused[2], top_k=10)[0]]
        with pytest.raises(gallery_lib.GalleryError, match="no subject 'b'.*enrolled: a, c, d, e"):
            gallery.verify("b", fused[2])
        assert gallery.integrity_check() == "ok"


def test_wrong_model_foreign_files_and_failed_enrolments_are_refused(tmp_path):
    path = str(tmp_path / "g.db")
    with Gallery(path, MODEL) as gallery:
        gallery.enroll("alice", [_face("a.jpg", np.ones(4), np.ones(4))])

        def faces_then_failure():
            yield _face("a1.jpg", np.ones(4), np.ones(4))
            raise ValueError("a2.jpg: no face")
        with pytest.raises(ValueError, match="a2.jpg: no face"):
            gallery.enroll("bob", faces_then_failure())
        with pytest.raises(ValueError, match="length 3, the gallery's model has 4"):
            gallery.enroll("bob", [EnrolledFace("x.jpg", {"score_embedding": np.ones(8),
                                                          "id_rgb": np.ones(3),
                                                          "id_depth": np.ones(4)})])
        with pytest.raises(ValueError, match="nothing to enrol"):
            gallery.enroll("bob", [])
        # Nothing of the failed enrolments was kept, not even the new subject.
        assert [s.name for s in gallery.subjects()] == ["alice"] and len(gallery) == 1
    for other in (ModelIdentity("cd" * 32, MODEL.dims, "other"),
                  ModelIdentity(MODEL.sha256, {"score_embedding": 16}, "wider")):
        with pytest.raises(gallery_lib.ModelMismatchError,
                           match=r"was enrolled with model abababababab \(test model"):
            Gallery(path, other)
    junk = tmp_path / "photo.db"
    junk.write_bytes(b"\xff\xd8 not a database " * 200)
    with pytest.raises(gallery_lib.GalleryError, match="photo.db is not a readable gallery"):
        Gallery(str(junk), MODEL)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery(str(tmp_path / "missing.db"), MODEL, create=False)


# A writer that enrols big enrolments in a loop (each one transaction of many faces), printing
# "start k" before and "done k" after each commit.
_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from tf_rgbd.deploy.gallery import EnrolledFace, Gallery, ModelIdentity
    model = ModelIdentity("ab" * 32, {"score_embedding": 512}, "kill test")
    faces, rounds = int(sys.argv[2]), int(sys.argv[3])
    vector = np.full(512, 1 / np.sqrt(512), np.float32)
    with Gallery(sys.argv[1], model) as gallery:
        for k in range(rounds):
            print("start", k, flush=True)
            gallery.enroll(f"s{k}", (EnrolledFace(f"/img/{k}_{i}.jpg",
                                                  {"score_embedding": vector})
                                     for i in range(faces)))
            print("done", k, flush=True)
""")


def _check_whole_enrolments(path, faces):
    with Gallery(path, ModelIdentity("ab" * 32, {"score_embedding": 512}), create=False) as g:
        assert g.integrity_check() == "ok"
        enrolments = g.enrolments()
        for name, _, recorded, stored in enrolments:
            assert recorded == stored == faces, (name, recorded, stored)
        return [name for name, *_ in enrolments]


def test_kill_9_during_enrolments_leaves_whole_enrolments_only(tmp_path):
    path = str(tmp_path / "g.db")
    faces = 3000   # ~6 MB per enrolment: the transaction is long enough to be killed inside
    rng = np.random.default_rng(1)
    before, killed_inside = 0, 0
    for _ in range(4):
        process = subprocess.Popen([sys.executable, "-c", _WRITER, path, str(faces), "1000"],
                                   cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
        started = {}
        deadline = time.time() + 120
        for line in process.stdout:
            word, k = line.split()
            started.setdefault((word, int(k)), time.time())
            if (word, int(k)) == ("start", 2):
                # Somewhere inside enrolment 2 (enrolment 1 took this long).
                took = started[("done", 1)] - started[("start", 1)]
                time.sleep(float(rng.uniform(0.05, 0.5)) * took)
                process.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline
        rest = process.stdout.read()   # lines written before the kill
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        done = [key for key in started if key[0] == "done"] + [
            line for line in rest.splitlines() if line.startswith("done")]
        names = _check_whole_enrolments(path, faces)
        # Every enrolment reported committed survived; the one in flight is whole or absent
        # (committed but killed before it printed "done", or rolled back).
        assert before + len(done) <= len(names) <= before + len(done) + 1
        killed_inside += len(names) == before + len(done)
        before = len(names)
    assert killed_inside >= 1   # at least one kill landed inside a transaction


def _file_size_limit(limit_bytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_full_disk_during_an_enrolment_is_one_error_and_changes_nothing(tmp_path):
    path = str(tmp_path / "g.db")
    first = subprocess.run([sys.executable, "-c", _WRITER, path, "10", "1"], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = _check_whole_enrolments(path, 10)
    sizes = [os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)]
    script = _WRITER.replace("for k in range(rounds):", "for k in range(1, 1 + rounds):")
    wrapped = ("import sys\nfrom tf_rgbd import cli, io_utils\ntry:\n"
               + textwrap.indent(script, "    ")
               + "\nexcept io_utils.DiskFullError as error:\n"
               "    print(cli.one_line(error), file=sys.stderr); sys.exit(2)\n")
    limited = subprocess.run([sys.executable, "-c", wrapped, path, "400", "1"], cwd=ROOT,
                             env=ENV, capture_output=True, text=True, timeout=120,
                             preexec_fn=_file_size_limit(max(sizes + [65536]) + 8192))
    assert limited.returncode == 2, limited.stderr[-3000:]
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in limited.stderr, limited.stderr[-3000:]
    assert lines[0].startswith("error: ") and (
        f"cannot write gallery (enrolment of 's1') {path}: disk full or file-size limit "
        "reached" in lines[0]), lines[0]
    assert _check_whole_enrolments(path, 10) == before
    # Space back: the same enrolment goes through.
    again = subprocess.run([sys.executable, "-c", script, path, "400", "1"], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    with Gallery(path, ModelIdentity("ab" * 32, {"score_embedding": 512}), create=False) as g:
        assert [(s.name, s.num_faces) for s in g.subjects()] == [("s0", 10), ("s1", 400)]
    assert io_utils.free_bytes(path) is not None
