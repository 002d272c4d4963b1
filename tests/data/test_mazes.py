"""Claims about the DFS maze data (Nolte et al. 2024, arXiv 2412.05117): spanning trees, unique valid paths,
token round trips, determinism, disjoint splits, and the batch layout of both objectives."""

import numpy as np
import pytest

from jaxformers.data import mazes
from jaxformers.data.maze_navigation import navigation_metrics


@pytest.mark.parametrize("n", [3, 5, 10])
def test_every_maze_is_a_spanning_tree_with_its_unique_path(n):
    tokens = mazes.generate_mazes(40, n, seed=0)
    assert tokens.shape == (40, mazes.seq_len(n))
    for t in tokens:
        maze = mazes.decode_tokens(t, n)
        conn = maze["connections"]
        assert conn.sum() == n * n - 1  # a tree on n^2 cells ...
        everything = mazes.solve(conn, (0, 0), (n - 1, n - 1))  # ... that is connected (raises)
        assert len(everything) >= 2 * n - 1
        path = maze["path"]
        assert tuple(path[0]) == maze["start"] and tuple(path[-1]) == maze["goal"]
        assert maze["start"] != maze["goal"]
        assert mazes.is_valid_path(conn, maze["start"], maze["goal"], path)
        np.testing.assert_array_equal(path, mazes.solve(conn, maze["start"], maze["goal"]))


def test_token_layout_prefix_and_path_region():
    n = 5
    t = mazes.generate_mazes(1, n, seed=3)[0]
    p = mazes.prefix_len(n)
    assert t[0] == mazes.ADJ_START and t[3 * (n * n - 1) + 1] == mazes.ADJ_END
    head = [mazes.ORIGIN_START, None, mazes.ORIGIN_END, mazes.TARGET_START, None,
            mazes.TARGET_END, mazes.PATH_START]
    assert [w if h is not None else None for w, h in zip(t[p - 7 : p], head)] == head
    region = mazes.path_mask(t, n)
    assert not region[:p].any()
    end = np.flatnonzero(t == mazes.PATH_END)[0]
    assert region[p : end + 1].all() and not region[end + 1 :].any()
    assert t[p] == t[p - 6] and t[end - 1] == t[p - 3]  # path starts at origin, ends at target
    tokens, is_path = mazes.maze_tokens(t[None], n)
    np.testing.assert_array_equal(is_path[0], region)


def test_connection_array_layout_matches_maze_dataset():
    # 2x2: (0,0)-(1,0) down, (0,0)-(0,1) right, (0,1)-(1,1) down.
    conn = np.zeros((2, 2, 2), bool)
    conn[0, 0, 0] = conn[0, 0, 1] = conn[1, 0, 0] = True
    t = mazes.encode_maze(conn, (1, 0), (1, 1))
    maze = mazes.decode_tokens(t, 2)
    np.testing.assert_array_equal(maze["connections"], conn)
    np.testing.assert_array_equal(maze["path"], [[1, 0], [0, 0], [0, 1], [1, 1]])


def test_tokens_round_trip_through_connection_arrays():
    n = 6
    for t in mazes.generate_mazes(20, n, seed=1):
        maze = mazes.decode_tokens(t, n)
        t2 = mazes.encode_maze(maze["connections"], maze["start"], maze["goal"],
                               rng=np.random.default_rng(7))
        assert mazes.maze_key(t2, n) == mazes.maze_key(t, n)
        np.testing.assert_array_equal(mazes.path_mask(t2, n), mazes.path_mask(t, n))
        np.testing.assert_array_equal(t2[mazes.prefix_len(n) - 7 :], t[mazes.prefix_len(n) - 7 :])


def test_encode_rejects_a_maze_with_a_cycle():
    conn = np.ones((2, 2, 2), bool)
    conn[0, 1] = conn[1, :, 1] = False  # 4 edges on 4 cells: a cycle
    with pytest.raises(ValueError, match="spanning tree"):
        mazes.encode_maze(conn, (0, 0), (1, 1))


def test_is_valid_path_rejects_walls_wrong_ends_and_revisits():
    conn = np.zeros((2, 2, 2), bool)
    conn[0, 0, 0] = conn[0, 0, 1] = conn[1, 0, 0] = True
    good = [[1, 0], [0, 0], [0, 1], [1, 1]]
    assert mazes.is_valid_path(conn, (1, 0), (1, 1), good)
    assert not mazes.is_valid_path(conn, (1, 0), (1, 1), [[1, 0], [1, 1]])  # through a wall
    assert not mazes.is_valid_path(conn, (0, 0), (1, 1), good)  # wrong start
    assert not mazes.is_valid_path(conn, (1, 0), (1, 1), good[:-1])  # stops short
    revisit = [[1, 0], [0, 0], [1, 0], [0, 0], [0, 1], [1, 1]]
    assert not mazes.is_valid_path(conn, (1, 0), (1, 1), revisit)


def test_generation_is_deterministic_and_independent_of_chunking():
    a = mazes.generate_mazes(12, 4, seed=5, offset=4090)  # crosses a generator chunk boundary
    b = mazes.generate_mazes(20, 4, seed=5, offset=4086)
    np.testing.assert_array_equal(a, b[4:16])
    assert not np.array_equal(a, mazes.generate_mazes(12, 4, seed=6, offset=4090))


def test_splits_never_share_a_maze():
    # 3x3 has only 192 spanning trees x 72 endpoint pairs: the generator repeats mazes often.
    splits = mazes.maze_splits(3, 3000, 600, 0)
    assert len(splits["train"]) == 3000 and len(splits["validation"]) == 600
    train = {mazes.maze_key(t, 3) for t in splits["train"]}
    val = {mazes.maze_key(t, 3) for t in splits["validation"]}
    assert len(train) < 3000  # repeats exist within a split ...
    assert not train & val  # ... but never across splits


def test_batches_serve_both_objectives():
    data = dict(name="mazes", grid_n=4, num_train=256, num_validation=64)
    it = mazes.build_mazes(data, split="train", seed=0, batch_size=8, process_index=0,
                           process_count=1)
    batch = next(it)
    p, length = mazes.prefix_len(4), mazes.seq_len(4)
    assert batch["inputs"].shape == (8, length)
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    np.testing.assert_array_equal(batch["weights"][:, :-1], batch["path_mask"][:, 1:])
    assert batch["weights"][:, : p - 1].sum() == 0  # the baseline never scores the prefix
    assert (batch["prefix_mask"][:, :p] == 1).all() and batch["prefix_mask"][:, p:].sum() == 0
    np.testing.assert_array_equal(batch["query_positions"][0], np.arange(p, length))
    state = it.get_state()
    nxt = next(it)
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["inputs"], nxt["inputs"])


def test_unknown_data_key_is_an_error():
    with pytest.raises(ValueError, match="grid_size"):
        mazes.build_mazes(dict(name="mazes", grid_size=5), split="train", seed=0, batch_size=2,
                          process_index=0, process_count=1)


def test_navigation_metrics_score_the_true_path_as_exact():
    n = 4
    tokens = mazes.generate_mazes(16, n, seed=2)
    p = mazes.prefix_len(n)
    truth = tokens[:, p:]
    m = navigation_metrics(truth, tokens, n)
    assert m == {"exact_match": 1.0, "token_accuracy": 1.0, "valid_path": 1.0}
    wrong = truth.copy()
    wrong[0, 1] = mazes.PAD
    m = navigation_metrics(wrong, tokens, n)
    assert m["exact_match"] == 15 / 16 and m["valid_path"] == 15 / 16
