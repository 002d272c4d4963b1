"""Our mazes against maze-dataset 1.4.2, the package the MLM-U paper trains on (Nolte et al. 2024).

The reference mazes are in fixtures/maze_dataset_fixture.json, written by
fixtures/make_maze_dataset_fixture.py (the package itself is too heavy to install for the tests).
"""

import json
import pathlib

import numpy as np
import pytest

from jaxformers.data import maze_words, mazes
from jaxformers.data.maze_navigation import navigation_metrics

FIXTURE = json.loads(
    (pathlib.Path(__file__).parent / "fixtures" / "maze_dataset_fixture.json").read_text())
REFERENCE = FIXTURE["mazes"]


def _ids(maze):
    return f"{maze['grid_n']}x{maze['grid_n']}"


@pytest.mark.parametrize("maze", REFERENCE, ids=_ids)
def test_their_tokens_decode_to_their_maze(maze):
    n = maze["grid_n"]
    decoded = mazes.decode_tokens(maze_words.words_to_tokens(maze["words"], n), n)
    np.testing.assert_array_equal(decoded["connections"], np.array(maze["connection_list"], bool))
    assert decoded["start"] == tuple(maze["start"]) and decoded["goal"] == tuple(maze["goal"])
    np.testing.assert_array_equal(decoded["path"], maze["solution"])


@pytest.mark.parametrize("maze", REFERENCE, ids=_ids)
def test_their_words_round_trip_exactly(maze):
    n = maze["grid_n"]
    tokens = maze_words.words_to_tokens(maze["words"], n)
    assert maze_words.tokens_to_words(tokens, n) == maze["words"].split()


@pytest.mark.parametrize("maze", REFERENCE, ids=_ids)
def test_their_connection_array_encodes_to_their_maze_and_solution(maze):
    n = maze["grid_n"]
    ours = mazes.encode_maze(maze["connection_list"], maze["start"], maze["goal"])
    theirs = maze_words.words_to_tokens(maze["words"], n)
    # Same maze (edge set, start, goal) and the identical path region; only the shuffled
    # adjacency-list order may differ.
    assert mazes.maze_key(ours, n) == mazes.maze_key(theirs, n)
    p = mazes.prefix_len(n)
    np.testing.assert_array_equal(ours[p - 7 :], theirs[p - 7 :])
    assert mazes.is_valid_path(maze["connection_list"], maze["start"], maze["goal"],
                               maze["solution"])


def test_maze_dataset_reads_our_mazes_as_we_do():
    """The other direction: our words, read by maze-dataset's `SolvedMaze.from_tokens` when the
    fixture was made, give our connection arrays and solutions."""
    ours = mazes.generate_mazes(4, 5, seed=3)
    read = FIXTURE["ours_read_by_maze_dataset"]
    assert len(read) == len(ours)
    for tokens, theirs in zip(ours, read, strict=True):
        assert maze_words.tokens_to_words(tokens, 5) == theirs["words"].split()
        maze = mazes.decode_tokens(tokens, 5)
        np.testing.assert_array_equal(maze["connections"], np.array(theirs["connection_list"], bool))
        np.testing.assert_array_equal(maze["path"], theirs["solution"])
        assert theirs["is_valid_path"]


def test_their_solutions_score_as_exact_and_a_wrong_turn_does_not():
    n = 5
    tokens = np.stack([maze_words.words_to_tokens(m["words"], n)
                       for m in REFERENCE if m["grid_n"] == n])
    p = mazes.prefix_len(n)
    predicted = tokens[:, p:].copy()
    assert navigation_metrics(predicted, tokens, n)["exact_match"] == 1.0
    predicted[0, 1] = predicted[0, 0]  # repeat the start cell instead of stepping on
    metrics = navigation_metrics(predicted, tokens, n)
    assert metrics["exact_match"] == metrics["valid_path"] == 1 - 1 / len(tokens)


@pytest.mark.parametrize("n", [5, 10])
def test_path_lengths_follow_maze_dataset_gen_dfs(n):
    """Our backtracker and maze-dataset's gen_dfs (with uniform distinct endpoints) give the same
    distribution of solution lengths: a two-sample Kolmogorov-Smirnov test over 2000 mazes each.
    At 2000 + 2000 samples the 0.1% critical distance is 1.95 * sqrt(2 / 2000) = 0.062; a
    different tree law moves it far more (Kruskal's uniform-edge trees: notes/issue_9.md)."""
    theirs = np.array(FIXTURE["path_length_histograms"][str(n)])
    ours_lengths = mazes.path_mask(mazes.generate_mazes(2000, n, seed=0), n).sum(1) - 1
    ours = np.bincount(ours_lengths, minlength=len(theirs))
    theirs = np.pad(theirs, (0, len(ours) - len(theirs)))
    distance = np.abs(np.cumsum(ours) / ours.sum() - np.cumsum(theirs) / theirs.sum()).max()
    assert distance < 1.95 * np.sqrt(2 / 2000), distance


def test_words_name_the_bad_word():
    words = REFERENCE[0]["words"].replace("(1,2)", "(7,2)", 1)
    with pytest.raises(ValueError, match=r"'\(7,2\)'.*3x3"):
        maze_words.words_to_tokens(words, 3)
    with pytest.raises(ValueError, match="maze prefix"):
        maze_words.words_to_tokens("<PATH_START> (0,0)", 3)


def test_evaluator_scores_a_file_of_maze_dataset_words(tmp_path, monkeypatch):
    import ml_collections

    from jaxformers.data import maze_navigation

    lines = [m["words"] for m in REFERENCE if m["grid_n"] == 5]
    path = tmp_path / "mazes.txt"
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    seen = {}
    monkeypatch.setattr(maze_navigation, "evaluate_navigation",
                        lambda model, variables, tokens, n, batch_size: seen.update(t=tokens) or {})
    data = dict(name="mazes", grid_n=5, eval_mazes=4, eval_file=str(path))
    metrics = maze_navigation.maze_navigation(None, {}, ml_collections.ConfigDict({"data": data}))
    # The whole file is scored (eval_mazes limits the generated split only) and the count reported.
    assert len(lines) > 4 and metrics["nav_mazes"] == len(lines)
    np.testing.assert_array_equal(seen["t"], [maze_words.words_to_tokens(w, 5) for w in lines])

    with pytest.raises(ValueError, match="data.eval_file='/no/such' is not a file"):
        mazes.data_options(dict(data, eval_file="/no/such"))
    with pytest.raises(ValueError, match="eval_file and data.eval_split"):
        mazes.data_options(dict(data, eval_split="train"))
    path.write_text(lines[0] + "\n" + lines[1].replace("(4,", "(9,", 1) + "\n")
    with pytest.raises(ValueError, match=r"mazes.txt line 2: word \d+ '\(9,"):
        maze_words.read_words_file(str(path), 5)
