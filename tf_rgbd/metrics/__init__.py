"""Pure metric functions used while training and by evaluation: depth and mask metrics
(:mod:`~tf_rgbd.metrics.depth`), closed-set identification (:mod:`~tf_rgbd.metrics.identification`)
and verification (:mod:`~tf_rgbd.metrics.verification`). No dataset, model or file access here."""
