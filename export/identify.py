"""Face gallery on the command line: enrol subjects from photographs, identify and verify faces.

  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db enroll --subject=alice a1.jpg a2.jpg
  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db identify probe.jpg --top_k=5
  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db verify --subject=alice probe.jpg
  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db calibrate \
      --data_dir=/tmp/synthetic --protocol=lock3dface_style --far_target=0.001
  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db list
  python -m export.identify --model=/tmp/export --gallery=/tmp/g.db remove --subject=alice

Commands:

* ``enroll``: the subject's face of every photograph (``--enrol_faces``), in ONE gallery
  transaction: if any photograph is unusable (unreadable, no face, ambiguous faces), each gets
  one ``error:`` line, nothing is enrolled, and the exit status is 2.
* ``identify``: every face of every photograph, with the ``--top_k`` best subjects.
* ``verify``: the subject's best score against the gallery's threshold (or ``--threshold``);
  exit 0 when accepted, 1 when rejected.
* ``calibrate``: chooses the verification threshold for ``--far_target`` on a dataset's
  protocol (all probe x gallery pairs scored by this model) and stores it in the gallery.
* ``list`` / ``remove``: the enrolled subjects / delete one (these do not load the model).

A gallery remembers the model that enrolled it (its artefact's sha256 and embedding sizes) and
refuses any other. Flags: ``tf_rgbd.config.gallery.IdentifyConfig``.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.gallery import GALLERY_COMMANDS, IdentifyConfig

CONFIG_FLAGS = config_flags.define_config_flags(IdentifyConfig(), required=("model", "gallery"))
USAGE = ("usage: python -m export.identify --model=DIR --gallery=FILE "
         "{enroll,identify,verify,calibrate,list,remove} [photos ...]")


def _load_recognizer(config: IdentifyConfig, multiple_faces: str):
    import os  # noqa: PLC0415

    from tf_rgbd.deploy.face_recognizer import FaceRecognizer  # noqa: PLC0415 (TensorFlow)
    if os.path.isfile(os.path.join(config.model, "manifest.json")):
        return FaceRecognizer.from_export(config.model, backend=config.backend,
                                          multiple_faces=multiple_faces,
                                          num_threads=config.num_threads or None)
    if config.backend not in ("auto", "keras"):
        raise cli.UserError(f"--model={config.model} is a run directory (no manifest.json): "
                            f"it runs in Keras only, not --backend={config.backend}; export it "
                            "first (python -m export.export)")
    return FaceRecognizer.from_run_dir(config.model, multiple_faces=multiple_faces)


def _need(config: IdentifyConfig, command: str, photos: list[str], subject: bool) -> None:
    if subject and not config.subject.strip():
        raise cli.UserError(f"{command} needs --subject=NAME")
    if command in ("enroll", "identify", "verify") and not photos:
        raise cli.UserError(f"{command} needs at least one photograph after the command")
    if command in ("list", "remove", "calibrate") and photos:
        raise cli.UserError(f"{command} takes no photographs (got {photos[:3]})")


def main(argv) -> Optional[int]:
    if len(argv) < 2 or argv[1] not in GALLERY_COMMANDS:
        raise cli.UserError(f"give a command, one of {', '.join(GALLERY_COMMANDS)}; {USAGE}")
    command, photos = argv[1], list(argv[2:])
    config = CONFIG_FLAGS.config()
    _need(config, command, photos, subject=command in ("enroll", "verify", "remove"))
    from tf_rgbd.deploy import gallery as gallery_lib  # noqa: PLC0415

    if command in ("list", "remove"):
        with gallery_lib.Gallery(config.gallery, None, create=False) as gallery:
            if command == "remove":
                removed = gallery.remove(config.subject)
                print(f"removed {config.subject} ({removed} faces) from {gallery.path}")
                return 0
            subjects = gallery.subjects()
            print(f"{gallery.path}: {len(subjects)} subjects, {len(gallery)} faces")
            for summary in subjects:
                last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(summary.last_enrolled))
                print(f"  {summary.name:<24} {summary.num_faces:>4} faces  "
                      f"{summary.num_enrolments:>3} enrolments  last {last} UTC")
            for method in gallery_lib.METHODS:
                threshold = gallery.threshold(method)
                if threshold is not None:
                    print(f"  {method} threshold {threshold.threshold:.4f} (FAR "
                          f"{threshold.far_target:g} on {threshold.protocol})")
            return 0

    from tf_rgbd.deploy import face_recognizer as recognizer_lib  # noqa: PLC0415

    multiple_faces = "all" if command == "identify" else config.enrol_faces
    recognizer = _load_recognizer(config, multiple_faces)
    with gallery_lib.Gallery(config.gallery, recognizer.model_identity,
                             create=command in ("enroll", "calibrate")) as gallery:
        if command == "enroll":
            def progress(done, total, path):
                print(f"embedded {done}/{total}: {path}", flush=True)
            try:
                count = recognizer_lib.enroll_files(gallery, recognizer, config.subject,
                                                    photos, config.depth, progress)
            except recognizer_lib.EnrolmentError as error:
                for problem in error.problems:
                    print(cli.one_line(ValueError(problem)), file=sys.stderr)
                print(f"nothing enrolled for {config.subject!r} ({len(error.problems)} of "
                      f"{len(photos)} photographs unusable)", file=sys.stderr)
                return cli.USAGE_ERROR_EXIT
            print(f"enrolled {config.subject}: {count} faces from {len(photos)} photographs "
                  f"into {gallery.path} ({len(gallery.subjects())} subjects, {len(gallery)} "
                  "faces)")
            return 0
        if command == "calibrate":
            if not config.data_dir:
                raise cli.UserError("calibrate needs --data_dir=DATASET (with --protocol)")
            chosen = recognizer_lib.protocol_threshold(
                recognizer, config.data_dir, config.protocol, config.far_target, config.method,
                config.batch_size)
            gallery.set_threshold(chosen)
            print(f"{config.method} threshold {chosen.threshold:.4f} for FAR "
                  f"{chosen.far_target:g}: measured FAR {chosen.measured_far:.4g}, TAR "
                  f"{chosen.tar:.4f} ({chosen.num_genuine} genuine / {chosen.num_impostor} "
                  f"impostor pairs on {chosen.protocol}); stored in {gallery.path}")
            return 0

        output = gallery_lib.METHOD_OUTPUTS[config.method]
        status, bad = 0, 0
        for path, faces, problem in recognizer_lib.embed_files(recognizer, photos,
                                                               config.depth):
            if problem:
                print(cli.one_line(ValueError(problem)), file=sys.stderr)
                bad += 1
                continue
            if command == "identify":
                threshold = gallery.threshold(config.method)
                results = gallery.search(faces[output], config.top_k, config.method)
                for face, matches in zip(faces, results):
                    print(recognizer_lib.describe_face(face))
                    for match in matches:
                        verdict = "" if threshold is None else (
                            "  above threshold" if match.score > threshold.threshold else "")
                        print(f"  {match.rank}. {match.subject:<24} {match.score:+.4f}"
                              f"{verdict}")
                continue
            face = faces[0]
            given = None if math.isnan(config.threshold) else config.threshold
            decision = gallery.verify(config.subject, face.embeddings[output], config.method,
                                      given)
            print(f"{path}: {config.subject} score {decision.score:+.4f} "
                  f"{'>' if decision.accepted else '<='} threshold {decision.threshold:.4f}: "
                  f"{'ACCEPTED' if decision.accepted else 'REJECTED'}")
            status = max(status, 0 if decision.accepted else 1)
        return cli.USAGE_ERROR_EXIT if bad else status


if __name__ == "__main__":
    cli.run(main)
