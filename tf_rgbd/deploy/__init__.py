"""tf_rgbd.deploy."""
