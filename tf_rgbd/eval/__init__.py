"""tf_rgbd.eval."""
