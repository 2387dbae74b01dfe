"""PatchDiscriminator: patch score shapes for each input kind, round trips."""
import numpy as np
import pytest

from tests import helpers
from tf_rgbd.models.discriminators import PatchDiscriminator


@pytest.mark.parametrize("channels", [3, 1, 7, 4])
def test_patch_scores_shape(channels, tmp_path):
    model = PatchDiscriminator(base_filters=4, num_downsamples=3, max_filters=16)
    outputs = helpers.run_model_checks(model, helpers.random_images(2, 32, channels),
                                       {"output": (2, 4, 4, 1)}, tmp_path,
                                       check_saving=channels == 3)
    # LSGAN scores are unbounded (no sigmoid).
    assert outputs["output"].dtype == np.float32


def test_fewer_downsamples_give_finer_patches():
    model = PatchDiscriminator(base_filters=4, num_downsamples=2)
    assert tuple(model(helpers.random_images(1, 32, 1)).shape) == (1, 8, 8, 1)
    with pytest.raises(ValueError):
        PatchDiscriminator(num_downsamples=0)
