"""Export a trained run to deployable artefacts and prove each one against Keras
(``tf_rgbd.deploy.export``).

  python -m export.export --run_dir=/tmp/rgbd_run --graph=pipeline \
      --formats=savedmodel,onnx,onnx_int8,tflite_fp32,tflite_int8 --output_dir=/tmp/export

Every flag is a field of ``tf_rgbd.config.export.ExportConfig``. Writes ``manifest.json``,
``parity.json``, ``preprocessing.json`` and one folder per graph; an artefact that fails its
parity gate is removed and the program exits 1 with the numbers.
"""
from __future__ import annotations

from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.export import ExportConfig

CONFIG_FLAGS = config_flags.define_config_flags(ExportConfig(), required=("output_dir",))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.deploy import export  # noqa: PLC0415 (imports TensorFlow)

    result = export.export_run(config)
    failed = ([entry for entry in result["parity"] if not entry["passed"]]
              + result["failed_before"])
    for key, reason in sorted(result["skipped"].items()):
        print(f"not exported: {key}: {reason}")
    if failed:
        print(f"FAILED parity: {', '.join(entry['artefact'] for entry in failed)} (removed; "
              f"numbers in {config.output_dir}/parity.json)")
        return 1
    print(f"exported {config.graph} to {config.output_dir}: {len(result['converted'])} "
          f"artefact(s) written, every artefact passed its parity gate")
    return 0


if __name__ == "__main__":
    cli.run(main)
