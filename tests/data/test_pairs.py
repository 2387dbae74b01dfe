"""Verification pairs: balanced, only the requested split's identities, deterministic, resumable."""
import numpy as np
import pytest

from tests.verification_data import write_identity_dataset
from tf_rgbd.data import pairs

SIZE = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_identity_dataset(str(tmp_path_factory.mktemp("pairs")), train_identities=5,
                                  test_identities=2, images_per_identity=3)


@pytest.fixture(scope="module")
def bank(data_dir):
    return pairs.load_depth_bank(data_dir, "train", SIZE)


def _take(bank, batches, seed=3, skip=0, batch_size=8):
    dataset = pairs.pair_dataset(bank, batch_size, seed, skip_pairs=skip)
    return [{key: value.numpy() for key, value in batch.items()}
            for batch in dataset.take(batches)]


def test_bank_holds_only_the_requested_split_and_identities(data_dir, bank):
    assert bank.identities == (0, 1, 2, 3, 4) and bank.depth.shape == (15, SIZE, SIZE, 1)
    test = pairs.load_depth_bank(data_dir, "test", SIZE)
    assert test.identities == (5, 6) and not set(test.example_ids) & set(bank.example_ids)
    subset = pairs.load_depth_bank(data_dir, "train", SIZE, identities=(1, 3))
    assert subset.identities == (1, 3) and len(subset.example_ids) == 6
    with pytest.raises(ValueError, match="no example with ground-truth depth"):
        pairs.load_depth_bank(data_dir, "train", SIZE, identities=(5,))


def test_training_pairs_are_balanced_correct_and_from_the_bank(bank):
    subset = bank.subset((0, 2, 4))
    batches = _take(subset, 6)
    same = np.concatenate([batch["same"] for batch in batches])
    assert same.mean() == 0.5 and np.all(same[::2] == 1) and np.all(same[1::2] == 0)
    for batch in batches:
        label_a, label_b = batch["label_a"], batch["label_b"]
        assert set(label_a) | set(label_b) <= {0, 2, 4}
        np.testing.assert_array_equal(label_a == label_b, batch["same"] == 1)
        assert np.all(batch["index_a"] != batch["index_b"])   # never an image with itself
        np.testing.assert_array_equal(batch["depth_a"], subset.depth[batch["index_a"]])
        np.testing.assert_array_equal(subset.labels[batch["index_b"]], label_b)
    # Over enough pairs every identity appears on both sides.
    assert set(np.concatenate([b["label_a"] for b in batches])) == {0, 2, 4}


def test_training_pairs_are_deterministic_and_resume_exactly(bank):
    first, again = _take(bank, 3), _take(bank, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["index_a"], b["index_a"])
        np.testing.assert_array_equal(a["index_b"], b["index_b"])
    resumed = _take(bank, 1, skip=16)    # after two batches of 8
    np.testing.assert_array_equal(resumed[0]["index_a"], first[2]["index_a"])
    np.testing.assert_array_equal(resumed[0]["index_b"], first[2]["index_b"])
    other = _take(bank, 3, seed=4)
    assert any(np.any(a["index_a"] != b["index_a"]) for a, b in zip(first, other))


def test_fixed_pairs_balanced_unique_seeded(bank):
    chosen = pairs.fixed_pairs(bank.example_ids, bank.labels, 100, seed=7)
    # 5 identities x C(3, 2) = 15 genuine pairs (fewer than the impostors): 15 + 15.
    assert len(chosen) == 30 and pairs.pair_balance(chosen) == 0.5
    assert len({(a, b) for a, b, _ in chosen}) == 30
    label = dict(zip(bank.example_ids, bank.labels.tolist()))
    assert all((label[a] == label[b]) == bool(same) for a, b, same in chosen)
    assert chosen == pairs.fixed_pairs(bank.example_ids, bank.labels, 100, seed=7)
    assert len(pairs.fixed_pairs(bank.example_ids, bank.labels, 4, seed=7)) == 8
    assert chosen != pairs.fixed_pairs(bank.example_ids, bank.labels, 100, seed=8)
    with pytest.raises(ValueError, match=">= 2 identities"):
        pairs.fixed_pairs(["a", "b"], [1, 1], 10, seed=0)


def test_split_identities():
    assert pairs.split_identities([3, 1, 2, 0, 5, 4, 1], 0.25) == ((0, 1, 2, 3), (4, 5))
    with pytest.raises(ValueError, match="at least 4 identities"):
        pairs.split_identities([0, 1, 2], 0.5)
