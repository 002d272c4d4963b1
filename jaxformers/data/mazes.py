"""DFS mazes tokenised as in MLM-U (Nolte et al. 2024, arXiv 2412.05117 §3).

A maze is a spanning tree of the n x n grid made by a randomised depth-first search (recursive
backtracker, maze-dataset's `gen_dfs`), with a start and a goal cell (start != goal). Being a tree,
the solution path is unique. Token layout (maze-dataset AOTP_UT_rasterized, "<-->" dropped):

    <ADJLIST_START> a b ; ... (n^2 - 1 open edges, shuffled order and endpoints) <ADJLIST_END>
    <ORIGIN_START> s <ORIGIN_END> <TARGET_START> g <TARGET_END> <PATH_START> s ... g <PATH_END> <PAD>...

Every maze has n^2 - 1 edges, so the prefix (up to and including <PATH_START>) has the fixed
length `prefix_len(n) = 3 n^2 + 6` and the path region starts at the same position in every maze.
The *path region* (the prediction region of the paper, `path_mask`) is the path cells plus
<PATH_END>. Cell (r, c) is token `NUM_SPECIAL + r * n + c`.

Generation runs the backtracker in lock step over a chunk of mazes with numpy (each maze does
exactly n^2 - 1 pushes and n^2 pops), so it is vectorised over mazes. Maze i of a seed is the same
whatever else is generated. Train / validation are split by a hash of the maze itself (connections
+ start + goal), so the two splits never share a maze, even where the generator repeats one (3x3).
`maze_words` reads and writes maze-dataset's text tokens (its `as_tokens` words).
"""

import functools
import os
import zlib

import numpy as np

from jaxformers.data.text import batched_iterator

PAD, MASK, BOS, EOS, UNK = 0, 1, 2, 3, 4
SEP, ADJ_START, ADJ_END = 5, 6, 7
ORIGIN_START, ORIGIN_END, TARGET_START, TARGET_END = 8, 9, 10, 11
PATH_START, PATH_END = 12, 13
NUM_SPECIAL = 14
SPECIAL_WORDS = ("[PAD]", "[MASK]", "[BOS]", "[EOS]", "[UNK]", ";", "<ADJLIST_START>",
                 "<ADJLIST_END>", "<ORIGIN_START>", "<ORIGIN_END>", "<TARGET_START>",
                 "<TARGET_END>", "<PATH_START>", "<PATH_END>")
_CHUNK = 4096  # mazes per generator call; maze i's rng is (seed, i // _CHUNK)
_KEYS = {"name", "grid_n", "num_train", "num_validation", "maze_seed", "seq_len", "eval_mazes",
         "eval_batch_size", "eval_split", "eval_file"}


def vocab_size(n: int) -> int:
    return NUM_SPECIAL + n * n


def prefix_len(n: int) -> int:
    """Tokens up to and including <PATH_START>: 1 + 3 (n^2 - 1) + 1 + 3 + 3 + 1."""
    return 3 * n * n + 6


def seq_len(n: int) -> int:
    """Longest possible sequence (a path through all n^2 cells + <PATH_END>), rounded up to 8."""
    return -(-(prefix_len(n) + n * n + 1) // 8) * 8


def _neighbours(n: int) -> np.ndarray:
    """[n^2, 4] neighbour cell ids (up, down, left, right), -1 outside the grid."""
    r, c = np.divmod(np.arange(n * n), n)
    out = np.full((n * n, 4), -1, np.int64)
    out[:, 0] = np.where(r > 0, (r - 1) * n + c, -1)
    out[:, 1] = np.where(r < n - 1, (r + 1) * n + c, -1)
    out[:, 2] = np.where(c > 0, r * n + c - 1, -1)
    out[:, 3] = np.where(c < n - 1, r * n + c + 1, -1)
    return out


def dfs_trees(num: int, n: int, rng: np.random.Generator):
    """Randomised DFS spanning trees of the n x n grid, `num` at once.

    Returns parent [num, n^2] (the root's parent is itself) and depth [num, n^2].
    """
    cells, rows = n * n, np.arange(num)
    nbr = _neighbours(n)
    visited = np.zeros((num, cells), bool)
    parent = np.empty((num, cells), np.int64)
    depth = np.zeros((num, cells), np.int64)
    stack = np.zeros((num, cells), np.int64)
    root = rng.integers(0, cells, size=num)
    visited[rows, root] = True
    parent[rows, root] = root
    stack[:, 0] = root
    top_index = np.zeros(num, np.int64)  # index of the top of each stack (stacks never empty
    for _ in range(2 * cells - 2):  # before the last push: n^2 - 1 pushes + n^2 - 1 pops)
        top = stack[rows, top_index]
        cand = nbr[top]  # [num, 4]
        free = (cand >= 0) & ~visited[rows[:, None], np.maximum(cand, 0)]
        keys = np.where(free, rng.random((num, 4)), -1.0)
        pick = cand[rows, keys.argmax(1)]
        push = free.any(1)
        new = np.where(push, pick, 0)
        pushed = rows[push]
        visited[pushed, new[push]] = True
        parent[pushed, new[push]] = top[push]
        depth[pushed, new[push]] = depth[pushed, top[push]] + 1
        top_index = np.where(push, top_index + 1, np.maximum(top_index - 1, 0))
        stack[rows, top_index] = np.where(push, new, stack[rows, top_index])
    return parent, depth


def tree_paths(parent: np.ndarray, depth: np.ndarray, start: np.ndarray, goal: np.ndarray):
    """Unique tree path start -> goal (both included). Returns paths [num, n^2] (-1 padded), lengths."""
    num, cells = parent.shape
    rows = np.arange(num)
    up_s = np.empty((num, cells), np.int64)
    up_g = np.empty((num, cells), np.int64)
    up_s[:, 0], up_g[:, 0] = start, goal
    for k in range(1, cells):  # ancestors, climbing one level per column (saturates at the root)
        up_s[:, k] = parent[rows, up_s[:, k - 1]]
        up_g[:, k] = parent[rows, up_g[:, k - 1]]
    anc_s = np.zeros((num, cells), bool)
    anc_g = np.zeros((num, cells), bool)
    anc_s[rows[:, None], up_s] = True
    anc_g[rows[:, None], up_g] = True
    lca = np.where(anc_s & anc_g, depth, -1).argmax(1)
    a = depth[rows, start] - depth[rows, lca]  # steps from start up to the common ancestor
    b = depth[rows, goal] - depth[rows, lca]
    length = a + b + 1
    k = np.arange(cells)[None]
    from_s = np.take_along_axis(up_s, np.minimum(k, cells - 1), 1)
    from_g = np.take_along_axis(up_g, np.clip(a[:, None] + b[:, None] - k, 0, cells - 1), 1)
    paths = np.where(k <= a[:, None], from_s, from_g)
    return np.where(k < length[:, None], paths, -1), length


def tokenize(parent, start, goal, paths, lengths, n: int, rng: np.random.Generator) -> np.ndarray:
    """Trees + endpoints + paths -> tokens [num, seq_len(n)] int32 (edge order/endpoints shuffled)."""
    num, cells = parent.shape
    rows = np.arange(num)[:, None]
    children = np.argsort(parent == np.arange(cells)[None], axis=1, kind="stable")[:, : cells - 1]
    edges = np.stack([children, parent[rows, children]], -1)  # [num, n^2 - 1, 2]
    edges = edges[rows, np.argsort(rng.random((num, cells - 1)), axis=1)]
    flip = rng.random((num, cells - 1)) < 0.5
    edges = np.where(flip[..., None], edges[..., ::-1], edges)
    adj = np.concatenate([edges + NUM_SPECIAL, np.full((num, cells - 1, 1), SEP)], -1)
    head = np.stack([
        np.full(num, ORIGIN_START), start + NUM_SPECIAL, np.full(num, ORIGIN_END),
        np.full(num, TARGET_START), goal + NUM_SPECIAL, np.full(num, TARGET_END),
        np.full(num, PATH_START),
    ], 1)
    region = np.full((num, seq_len(n) - prefix_len(n)), PAD, np.int64)
    k = np.arange(cells)[None]
    region[:, :cells] = np.where(k < lengths[:, None], paths + NUM_SPECIAL, PAD)
    region[np.arange(num), lengths] = PATH_END
    tokens = np.concatenate([
        np.full((num, 1), ADJ_START), adj.reshape(num, -1), np.full((num, 1), ADJ_END), head, region,
    ], 1)
    return tokens.astype(np.int32)


def generate_mazes(num: int, n: int, seed: int, offset: int = 0) -> np.ndarray:
    """Tokens [num, seq_len(n)] of mazes offset .. offset+num-1 of `seed` (deterministic)."""
    if n < 2:
        raise ValueError(f"grid_n={n} must be >= 2")
    out, first_chunk = [], offset // _CHUNK
    last_chunk = (offset + num - 1) // _CHUNK if num else first_chunk - 1
    for chunk in range(first_chunk, last_chunk + 1):
        rng = np.random.default_rng([seed, n, chunk])
        parent, depth = dfs_trees(_CHUNK, n, rng)
        start = rng.integers(0, n * n, size=_CHUNK)
        goal = (start + rng.integers(1, n * n, size=_CHUNK)) % (n * n)
        paths, lengths = tree_paths(parent, depth, start, goal)
        out.append(tokenize(parent, start, goal, paths, lengths, n, rng))
    tokens = np.concatenate(out) if out else np.zeros((0, seq_len(n)), np.int32)
    lo = offset - first_chunk * _CHUNK
    return tokens[lo : lo + num]


# Structure <-> tokens --------------------------------------------------------------------------
def path_mask(tokens: np.ndarray, n: int) -> np.ndarray:
    """Bool [..., T]: the prediction region (path cells and <PATH_END>), never the prefix or PAD."""
    pos = np.arange(tokens.shape[-1])
    return (pos >= prefix_len(n)) & (tokens != PAD)


def maze_tokens(tokens: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, is_path) for two-modality models: modality 0 = description, 1 = path region."""
    return tokens, path_mask(tokens, n)


def decode_tokens(tokens: np.ndarray, n: int) -> dict:
    """One maze's tokens -> {connections [2,n,n] bool, start (r,c), goal (r,c), path [L,2]}.

    connections[0, r, c]: open to the cell below; connections[1, r, c]: open to the right
    (maze-dataset's `connection_list`). Raises ValueError on a malformed sequence.
    """
    tokens = np.asarray(tokens)
    p = prefix_len(n)
    if tokens.shape[0] < p or tokens[0] != ADJ_START or tokens[p - 1] != PATH_START:
        raise ValueError(f"tokens do not start with a {n}x{n} maze prefix of {p} tokens")
    edges = tokens[1 : 1 + 3 * (n * n - 1)].reshape(-1, 3)[:, :2] - NUM_SPECIAL
    conn = np.zeros((2, n, n), bool)
    for a, b in edges:
        (ra, ca), (rb, cb) = divmod(int(min(a, b)), n), divmod(int(max(a, b)), n)
        if rb == ra + 1 and cb == ca:
            conn[0, ra, ca] = True
        elif rb == ra and cb == ca + 1:
            conn[1, ra, ca] = True
        else:
            raise ValueError(f"edge ({a}, {b}) joins cells that are not neighbours")
    region = tokens[p:]
    end = np.flatnonzero(region == PATH_END)
    cells = region[: end[0]] if end.size else region[region != PAD]
    path = np.stack(np.divmod(cells.astype(np.int64) - NUM_SPECIAL, n), -1)
    start = divmod(int(tokens[p - 6]) - NUM_SPECIAL, n)
    goal = divmod(int(tokens[p - 3]) - NUM_SPECIAL, n)
    return {"connections": conn, "start": start, "goal": goal, "path": path}


def solve(connections: np.ndarray, start, goal) -> np.ndarray:
    """Path [L, 2] start -> goal through the open connections (breadth-first search)."""
    n = connections.shape[-1]
    prev = {tuple(start): None}
    frontier = [tuple(start)]
    while frontier:
        nxt = []
        for r, c in frontier:
            for dr, dc, ok in ((1, 0, r < n - 1 and connections[0, r, c]),
                               (-1, 0, r > 0 and connections[0, r - 1, c]),
                               (0, 1, c < n - 1 and connections[1, r, c]),
                               (0, -1, c > 0 and connections[1, r, c - 1])):
                cell = (r + dr, c + dc)
                if ok and cell not in prev:
                    prev[cell] = (r, c)
                    nxt.append(cell)
        frontier = nxt
    if tuple(goal) not in prev:
        raise ValueError(f"goal {tuple(goal)} is not reachable from start {tuple(start)}")
    path, cell = [], tuple(goal)
    while cell is not None:
        path.append(cell)
        cell = prev[cell]
    return np.array(path[::-1], np.int64)


def encode_maze(connections, start, goal, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """A maze from outside (maze-dataset `connection_list` [2,n,n], start, goal) -> tokens [seq_len].

    The maze must be a spanning tree (n^2 - 1 open connections, all cells reachable)."""
    conn = np.asarray(connections, bool)
    n = conn.shape[-1]
    if conn.shape != (2, n, n):
        raise ValueError(f"connections must have shape [2, n, n]; got {conn.shape}")
    if conn.sum() != n * n - 1 or conn[0, -1].any() or conn[1, :, -1].any():
        raise ValueError("connections must form a spanning tree inside the grid (n^2 - 1 edges)")
    path = solve(conn, start, goal)
    if tuple(start) == tuple(goal):
        raise ValueError("start and goal must differ")
    cells = n * n
    # Root the tree at cell 0 by a BFS over all cells to get parents for `tokenize`.
    parent = np.full(cells, -1, np.int64)
    parent[0], order = 0, [0]
    for cell in order:
        r, c = divmod(cell, n)
        for other, ok in ((cell + n, r < n - 1 and conn[0, r, c]), (cell - n, r > 0 and conn[0, r - 1, c]),
                          (cell + 1, c < n - 1 and conn[1, r, c]), (cell - 1, c > 0 and conn[1, r, c - 1])):
            if ok and parent[other] < 0:
                parent[other] = cell
                order.append(other)
    if len(order) != cells:
        raise ValueError("connections do not connect every cell")
    ids = path[:, 0] * n + path[:, 1]
    paths = np.full((1, cells), -1, np.int64)
    paths[0, : len(ids)] = ids
    s, g = np.array([ids[0]]), np.array([ids[-1]])
    rng = rng or np.random.default_rng(0)
    return tokenize(parent[None], s, g, paths, np.array([len(ids)]), n, rng)[0]


def is_valid_path(connections, start, goal, path) -> bool:
    """True iff `path` [L,2] goes start -> goal through open passages without revisiting a cell."""
    conn = np.asarray(connections, bool)
    path = np.asarray(path).reshape(-1, 2)
    if len(path) == 0 or tuple(path[0]) != tuple(start) or tuple(path[-1]) != tuple(goal):
        return False
    n = conn.shape[-1]
    if (path < 0).any() or (path >= n).any() or len({tuple(p) for p in path}) != len(path):
        return False
    for (r0, c0), (r1, c1) in zip(path[:-1], path[1:], strict=True):
        lo_r, lo_c = min(r0, r1), min(c0, c1)
        if abs(r0 - r1) + abs(c0 - c1) != 1:
            return False
        if not conn[0 if r0 != r1 else 1, lo_r, lo_c]:
            return False
    return True


# Splits and the grain source --------------------------------------------------------------------
def maze_key(tokens: np.ndarray, n: int) -> bytes:
    """Canonical identity of a maze (edge set + start + goal), independent of token order."""
    p = prefix_len(n)
    edges = np.sort(tokens[1 : 1 + 3 * (n * n - 1)].reshape(-1, 3)[:, :2], axis=1)
    edges = edges[np.lexsort(edges.T[::-1])]
    return edges.astype(np.int16).tobytes() + tokens[[p - 6, p - 3]].astype(np.int16).tobytes()


@functools.lru_cache(maxsize=8)
def maze_splits(n: int, num_train: int, num_validation: int, seed: int) -> dict:
    """{"train": tokens, "validation": tokens}: mazes 0, 1, ... of `seed`, assigned to a split by
    CRC32 of `maze_key` (bucket < validation fraction -> validation), so no maze is in both."""
    fraction = num_validation / (num_train + num_validation)
    want = {"train": num_train, "validation": num_validation}
    got = {"train": [], "validation": []}
    count = {"train": 0, "validation": 0}
    offset = 0
    while any(count[s] < want[s] for s in want):
        if offset > 50 * (num_train + num_validation) + 10 * _CHUNK:
            raise ValueError(f"could not draw {want} distinct-split {n}x{n} mazes")
        tokens = generate_mazes(_CHUNK, n, seed, offset)
        offset += _CHUNK
        bucket = np.array([zlib.crc32(maze_key(t, n)) % 100_000 for t in tokens])
        is_val = bucket < fraction * 100_000
        for split, sel in (("validation", is_val), ("train", ~is_val)):
            take = tokens[sel][: want[split] - count[split]]
            got[split].append(take)
            count[split] += len(take)
    return {s: np.concatenate(v) for s, v in got.items()}


class MazeSource:
    """Record i -> one layout that serves both objectives.

    Next token: inputs [T] tokens; targets [T] tokens shifted left (PAD last); weights [T] 1 where
    the *target* is in the prediction region (the authors' AR baseline: loss on path tokens only,
    Nolte et al. 2024, arXiv 2412.05117), so the registered "next_token" objective is the baseline unchanged.
    MLM-U: inputs; path_mask [T] (prediction region); prefix_mask [T] (always visible);
    query_positions [T - prefix_len] (the positions the encoder-decoder is asked to predict).
    """

    def __init__(self, tokens: np.ndarray, n: int, length: int):
        if length < tokens.shape[1]:
            raise ValueError(f"data.seq_len={length} < {tokens.shape[1]} tokens of a {n}x{n} maze")
        self.tokens = np.pad(tokens, ((0, 0), (0, length - tokens.shape[1])))
        self.n = n

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        t = self.tokens[index]
        mask = path_mask(t, self.n).astype(np.int32)
        p = prefix_len(self.n)
        return {
            "inputs": t,
            "targets": np.append(t[1:], PAD).astype(np.int32),
            "weights": np.append(mask[1:], 0).astype(np.float32),
            "path_mask": mask,
            "prefix_mask": (np.arange(t.size) < p).astype(np.int32),
            "query_positions": np.arange(p, t.size, dtype=np.int32),
        }


def data_options(data_config) -> dict:
    unknown = set(data_config.keys()) - _KEYS
    if unknown:
        raise ValueError(f"unknown config key(s) data.{sorted(unknown)}; valid: {sorted(_KEYS)}")
    n = data_config.get("grid_n", 5)
    # Checked here, with the keys, so a bad value fails when the run starts, not at its first eval.
    eval_split = data_config.get("eval_split", "validation")
    if eval_split not in ("train", "validation"):
        raise ValueError(f"data.eval_split={eval_split!r}; expected 'train' or 'validation'")
    eval_file = data_config.get("eval_file", None) or None
    if eval_file is not None and not os.path.isfile(eval_file):
        raise ValueError(f"data.eval_file={eval_file!r} is not a file (one maze per line, in "
                         "maze-dataset words; see data/maze_words.py)")
    if eval_file is not None and data_config.get("eval_split", None) is not None:
        raise ValueError("data.eval_file and data.eval_split both name the mazes to evaluate; "
                         "set one of them")
    return {
        "n": n,
        "eval_split": eval_split,
        "eval_file": eval_file,
        "num_train": data_config.get("num_train", 100_000),
        "num_validation": data_config.get("num_validation", 2000),
        "seed": data_config.get("maze_seed", 42),
        "length": data_config.get("seq_len", None) or seq_len(n),
    }


def build_mazes(data_config, *, split, seed, batch_size, process_index, process_count):
    """data.grid_n (5), num_train (100k), num_validation (2k), maze_seed (42), seq_len (None =
    seq_len(grid_n)); eval_mazes / eval_batch_size / eval_split / eval_file are read by the
    "maze_navigation" evaluator."""
    o = data_options(data_config)
    tokens = maze_splits(o["n"], o["num_train"], o["num_validation"], o["seed"])[split]
    return batched_iterator(
        MazeSource(tokens, o["n"], o["length"]), split=split, seed=seed, batch_size=batch_size,
        process_index=process_index, process_count=process_count,
    )
