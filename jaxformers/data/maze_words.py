"""Maze token ids <-> maze-dataset's text tokens (Nolte et al. 2024, arXiv 2412.05117 §3;
methods.md §5.1 and §5.6).

The paper tokenises mazes with maze-dataset's `MazeTokenizer(AOTP_UT_rasterized)`, whose output is
a list of words such as `<ADJLIST_START> (0,0) <--> (1,0) ; ... <PATH_END>`, and drops the `<-->`
connector before training. `words_to_tokens` maps such a word list to this project's ids (see
`mazes`) and `tokens_to_words` maps them back, so mazes tokenised by maze-dataset (or written by
hand) can be scored (`read_words_file`, the evaluator's `data.eval_file`), and maze-dataset's
`SolvedMaze.from_tokens` reads our mazes (tests/data/test_maze_dataset_interop.py checks both ways).
"""

import re

import numpy as np

from jaxformers.data import mazes

CONNECTOR = "<-->"
_CELL = re.compile(r"^\((\d+),(\d+)\)$")


def words_to_tokens(words: str | list[str], n: int) -> np.ndarray:
    """maze-dataset words (a list, or one space-separated string) -> ids [seq_len(n)] int32.

    `<-->` connectors are dropped and the path region is padded with [PAD]. Raises ValueError
    naming the first word that is not in the vocabulary of an n x n maze, or a sequence whose
    layout is not a whole n x n maze (checked by `mazes.decode_tokens`).
    """
    if isinstance(words, str):
        words = words.split()
    special = {w: i for i, w in enumerate(mazes.SPECIAL_WORDS)}
    ids = []
    for position, word in enumerate(words):
        if word == CONNECTOR:
            continue
        if word in special:
            ids.append(special[word])
            continue
        cell = _CELL.match(word)
        if cell is None or max(int(cell[1]), int(cell[2])) >= n:
            raise ValueError(f"word {position} {word!r} is neither a special word "
                             f"{mazes.SPECIAL_WORDS} nor a cell '(r,c)' of a {n}x{n} grid")
        ids.append(mazes.NUM_SPECIAL + int(cell[1]) * n + int(cell[2]))
    if len(ids) > mazes.seq_len(n):
        raise ValueError(f"{len(ids)} tokens (without {CONNECTOR}) exceed seq_len({n}) = "
                         f"{mazes.seq_len(n)}")
    tokens = np.full(mazes.seq_len(n), mazes.PAD, np.int32)
    tokens[: len(ids)] = ids
    mazes.decode_tokens(tokens, n)  # validates the prefix layout and that edges join neighbours
    return tokens


def tokens_to_words(tokens: np.ndarray, n: int, *, connector: bool = True) -> list[str]:
    """ids [T] -> maze-dataset words, [PAD] dropped; `connector` puts `<-->` back between the two
    cells of every adjacency-list edge, as maze-dataset writes them."""
    tokens = np.asarray(tokens)
    words = []
    for i, token in enumerate(tokens[tokens != mazes.PAD]):
        if token < mazes.NUM_SPECIAL:
            words.append(mazes.SPECIAL_WORDS[token])
            continue
        r, c = divmod(int(token) - mazes.NUM_SPECIAL, n)
        words.append(f"({r},{c})")
        # Adjacency-list edges sit at positions 1 + 3k (first cell) and 2 + 3k (second cell).
        if connector and i < 1 + 3 * (n * n - 1) and i % 3 == 1:
            words.append(CONNECTOR)
    return words


def read_words_file(path: str, n: int) -> np.ndarray:
    """A text file with one maze per line, in maze-dataset words (e.g. `" ".join(words)` for each
    maze of `dataset.as_tokens(tokenizer)`) -> ids [num_mazes, seq_len(n)]. Blank lines are
    skipped; an error names the file and line."""
    rows = []
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(words_to_tokens(line, n))
            except ValueError as e:
                raise ValueError(f"{path} line {line_number}: {e}") from None
    if not rows:
        raise ValueError(f"{path} holds no mazes")
    return np.stack(rows)
