"""Recognition evaluation scoring: per-subset identification, pooled all-probe figures."""
import numpy as np
import pytest

from tf_rgbd.data.protocol import Protocol
from tf_rgbd.eval.embeddings import EmbeddingSet
from tf_rgbd.eval.recognition import score_protocol


def test_neutral_probes_stay_out_of_the_pooled_rank1_tar_and_eer():
    # issue 10, defect 3. Four identities on orthogonal axes. Neutral probes sit on their
    # gallery embedding (near-duplicates: always right); expression probes point at the NEXT
    # identity (always wrong). Pooled over the averaged subsets, rank-1 must be 0.
    axes = np.eye(4, dtype=np.float32)
    ids, labels, rows = [], [], []
    for identity in range(4):
        ids += [f"g{identity}", f"n{identity}", f"e{identity}"]
        labels += [identity] * 3
        rows += [axes[identity], axes[identity], axes[(identity + 1) % 4]]
    embedded = EmbeddingSet(np.array(ids), np.array(labels), {"rgb": np.stack(rows)})
    protocol = Protocol("l3d", "unit", "test", tuple(f"g{i}" for i in range(4)),
                        {"neutral": tuple(f"n{i}" for i in range(4)),
                         "expression": tuple(f"e{i}" for i in range(4))},
                        report_only=("neutral",))
    scored = score_protocol(embedded, protocol)
    assert scored["per_subset"]["rgb"]["neutral"].rank1 == 1.0   # still reported
    assert scored["per_subset"]["rgb"]["expression"].rank1 == 0.0
    assert scored["overall"]["rgb"].num_probes == 4
    assert scored["overall"]["rgb"].rank1 == 0.0
    verification = scored["verification"]["rgb"]
    assert (verification.num_genuine, verification.num_impostor) == (4, 12)


def test_a_collapsed_branch_is_detected_from_its_embeddings():
    from tf_rgbd.eval import embeddings
    rng = np.random.default_rng(0)
    trained = rng.normal(size=(32, 64))
    trained /= np.linalg.norm(trained, axis=1, keepdims=True)
    # Measured on a collapsed RGB+D+M run: the same unit vector up to ~1e-8 for every face.
    constant = np.tile(trained[:1], (32, 1)) + 1e-8 * rng.normal(size=(32, 64))
    spread = embeddings.embedding_spread({"rgb": trained, "depth": constant})
    assert spread["rgb"] > 0.05 and spread["depth"] < 1e-6
    assert embeddings.collapsed_branches(spread) == ["depth"]
