"""Bursty Zipf classification sequences (Chan et al. 2022; Reddy 2024): shapes, seeding, burstiness
counts, Zipf frequencies, label permutation on held-out classes, no-support queries, bad input."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.data import icl_bursty as data
from jaxformers.ops import icl_bursty as S

K, D, L, N = 64, 8, 16, 8
PROTOS = S.class_prototypes(jax.random.key(0), K, D)
HOLDOUT = S.class_prototypes(jax.random.key(1), 10, D)


def test_shapes_labels_and_seeding():
    items, labels, classes = S.training_sequences(jax.random.key(3), PROTOS, 32, context=N, num_labels=L)
    assert items.shape == (32, N + 1, D) and labels.shape == classes.shape == (32, N + 1)
    np.testing.assert_array_equal(labels, classes % L)  # training class k has label k mod L
    again = S.training_sequences(jax.random.key(3), PROTOS, 32, context=N, num_labels=L)
    other = S.training_sequences(jax.random.key(4), PROTOS, 32, context=N, num_labels=L)
    np.testing.assert_array_equal(items, again[0])
    assert not np.array_equal(classes, other[2])


@pytest.mark.parametrize("b", [1, 2, 4, 8])
def test_a_bursty_context_holds_n_over_b_classes_b_times_each_and_the_query_among_them(b):
    _, _, classes = S.training_sequences(jax.random.key(5), PROTOS, 256, context=N, burstiness=b)
    classes = np.asarray(classes)
    for row in classes:
        values, counts = np.unique(row[:N], return_counts=True)
        assert len(values) == N // b and np.all(counts == b)
        assert np.sum(row[:N] == row[N]) == b


def test_non_bursty_draws_follow_the_zipf_law():
    alpha = 1.0
    _, _, classes = S.training_sequences(
        jax.random.key(6), PROTOS, 4096, context=N, burstiness=0, zipf_alpha=alpha
    )
    freq = np.bincount(np.asarray(classes).ravel(), minlength=K) / classes.size
    p = np.arange(1, K + 1) ** -alpha
    p /= p.sum()
    # 36864 draws: binomial standard error of p_0 ≈ 0.0022; 5 sigma
    assert abs(freq[0] - p[0]) < 0.011 and abs(freq[:8].sum() - p[:8].sum()) < 0.013


def test_p_bursty_mixes_bursty_and_iid_sequences():
    _, _, classes = S.training_sequences(
        jax.random.key(7), PROTOS, 2000, context=N, burstiness=4, p_bursty=0.5
    )
    bursty = (np.asarray(classes)[:, :N] == np.asarray(classes)[:, N:]).sum(1) == 4
    assert 0.45 < bursty.mean() < 0.56  # iid rows have 4 matches with probability ~1e-5 at K = 64


def test_exemplars_are_noisy_copies_of_their_class_mean():
    items, _, classes = S.training_sequences(jax.random.key(8), PROTOS, 64, context=N, noise=0.1)
    mu = np.asarray(PROTOS)[np.asarray(classes)]
    np.testing.assert_allclose(np.asarray(items), mu / np.sqrt(1.01), atol=0.2)  # |ε η| ≈ 0.1 per coordinate


def test_fewshot_holdout_labels_are_redrawn_per_prompt_and_consistent_within_it():
    _, labels, classes = S.fewshot_holdout(jax.random.key(9), HOLDOUT, 512, ways=2, shots=4, num_labels=L)
    labels, classes = np.asarray(labels), np.asarray(classes)
    for lab, cls in zip(labels, classes):
        assert len(set(cls[:N])) == 2 and np.all(np.unique(cls[:N], return_counts=True)[1] == 4)
        assert len(set(lab[:N])) == 2 and cls[N] in cls[:N]
        for c in set(cls):  # one label per class within a prompt, the query's included
            assert len(set(lab[cls == c])) == 1
    # across prompts a held-out class gets many different labels: they can only be read from context
    assert len(set(labels[classes[:, N] == 0, N])) > L // 2


def test_no_support_queries_never_share_a_class_with_the_context():
    _, labels, classes = S.no_support(jax.random.key(10), PROTOS, 512, context=N, num_labels=L)
    classes = np.asarray(classes)
    assert not np.any(classes[:, :N] == classes[:, N:])
    np.testing.assert_array_equal(labels, classes % L)


def test_bad_input_is_a_one_line_error_naming_the_field():
    with pytest.raises(ValueError, match="burstiness=3"):
        S.training_sequences(jax.random.key(0), PROTOS, 4, context=N, burstiness=3)
    for bad, field in [
        (dict(classes=100, labels=32), "classes=100"),
        (dict(burstiness=3), "burstiness=3"),
        (dict(p_bursty=1.5), "p_bursty"),
        (dict(dim=0), "dim=0"),
    ]:
        with pytest.raises(ConfigError, match=field):
            data.fields(ml_collections.ConfigDict(bad))
