"""tf_rgbd.training."""
