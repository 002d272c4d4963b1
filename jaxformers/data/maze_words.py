"""Maze token ids <-> maze-dataset's text tokens (Nolte et al. 2024, arXiv 2412.05117 §3;
Nolte et al. 2024, arXiv 2412.05117).

The paper tokenises mazes with maze-dataset's `MazeTokenizer(AOTP_UT_rasterized)`, whose output is
a list of words such as `<ADJLIST_START> (0,0) <--> (1,0) ; ... <PATH_END>`, and drops the `<-->`
connector before training. `words_to_tokens` maps such a word list to this project's ids (see
`mazes`) and `tokens_to_words` maps them back, so mazes tokenised by maze-dataset (or written by
hand) can be scored (`read_words_file`, the evaluator's `data.eval_file`), and maze-dataset's
`SolvedMaze.from_tokens` reads our mazes (tests/data/test_maze_dataset_interop.py checks both ways).
"""

import numpy as np

from jaxformers.data import mazes
from jaxformers.errors import InputFileError

CONNECTOR = "<-->"


def vocabulary(n: int) -> list[str]:
    """The word of each token id of an n x n maze: `mazes.SPECIAL_WORDS`, then the cells '(r,c)'
    in row-major order (cell (r, c) is id NUM_SPECIAL + r * n + c)."""
    return list(mazes.SPECIAL_WORDS) + [f"({r},{c})" for r in range(n) for c in range(n)]


def words_to_tokens(words: str | list[str], n: int) -> np.ndarray:
    """maze-dataset words (a list, or one space-separated string) -> ids [seq_len(n)] int32.

    `<-->` connectors are dropped and the path region is padded with [PAD]. Raises ValueError
    naming the first word that is not in the vocabulary of an n x n maze, or a sequence whose
    layout is not a whole n x n maze (checked by `mazes.decode_tokens`).
    """
    if isinstance(words, str):
        words = words.split()
    index = {word: i for i, word in enumerate(vocabulary(n))}
    ids = []
    for position, word in enumerate(words):
        if word == CONNECTOR:
            continue
        if word not in index:
            raise ValueError(f"word {position} {word!r} is neither a special word "
                             f"{mazes.SPECIAL_WORDS} nor a cell '(r,c)' of a {n}x{n} grid")
        ids.append(index[word])
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
    vocab, words = vocabulary(n), []
    for i, token in enumerate(tokens[tokens != mazes.PAD]):
        words.append(vocab[token])
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
                raise InputFileError(f"{path} line {line_number}: {e}") from None
    if not rows:
        raise InputFileError(f"{path} holds no mazes")
    return np.stack(rows)
