"""Re-run the parity gates of an export directory: every artefact in its real runtime
(TensorFlow, ONNX Runtime, LiteRT, TensorRT when importable) on real test-split examples
against the exported Keras graph (``tf_rgbd.deploy.export.verify_export``).

  python -m export.verify --output_dir=/tmp/export

Every flag is a field of ``tf_rgbd.config.export.VerifyExportConfig``. Writes ``parity.json``
(every comparison, pass or fail), removes failing artefacts from the directory and the
manifest, prints the table and exits 1 when any artefact failed.
"""
from __future__ import annotations

from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.export import VerifyExportConfig

CONFIG_FLAGS = config_flags.define_config_flags(VerifyExportConfig(), required=("output_dir",))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.deploy import export  # noqa: PLC0415 (imports TensorFlow)

    outcome = export.verify_export(config.output_dir, config.data_dir, config.parity_samples,
                                   config.batch_size, config.remove_failing)
    failed = [entry for entry in outcome["parity"] if not entry["passed"]]
    if failed:
        for entry in failed:
            print(f"FAILED {entry['artefact']}: {'; '.join(entry['failures'])}")
        return 1
    print(f"{len(outcome['parity'])} artefact(s) of {config.output_dir} passed their gates")
    return 0


if __name__ == "__main__":
    cli.run(main)
