"""Two-modality sequences for Mixture-of-Transformers (Liang et al. 2025): dataset "two_modality".

`data.variant = "synthetic"` (default, needs nothing else) interleaves two token processes with
disjoint vocabularies, in the spirit of Chameleon's text + image-token sequences (MoT §3.2):

* modality 0, "text", ids [0, 128): `data.text_source = "markov"` (default) is a Markov chain of
  order `text_order` (1 by default; 2 hashes the pair (a, b) into `text_contexts` contexts), each
  context with 4 possible successors and Dirichlet(1) weights: a floor the model reaches within a
  few hundred steps. `"corpus"` is real text instead: consecutive ASCII bytes of the text dataset's
  corpus (data/text.py: the standard library's sources, split by file), bytes >= 128 mapped to
  127 (`corpus_text`); it has no floor within a CPU run's reach.
* modality 1, "image", ids [128, 256): `image_height` x `image_width` raster-scanned grids whose
  pixel copies the pixel above (p=0.6), is the left pixel + 1 (p=0.25) or is uniform (p=0.15).
  The row above the first row is a fixed map of the last text token ("caption"), so predicting an
  image needs the text before it: the flow only global attention provides.

A sequence alternates text spans of 16-48 tokens with one image (32 tokens by default), so the
two modalities get about equal token counts. Both processes are fixed by `data.process_seed`;
train and validation draw different samples (record seeds differ).

`data.variant = "mazes"`: maze sequences (data/mazes.py) with the description (adjacency list,
origin, target) as modality 0 and the path region as modality 1; every non-PAD target is scored.

Batches: inputs, targets, weights, modality_ids (of the input token: routes the MoT weights) and
target_modality_ids (of the target token: keys the per-modality losses loss_m0 / loss_m1).
"""

import numpy as np

from jaxformers.data import text as text_data
from jaxformers.data.text import batched_iterator

TEXT_VOCAB = 128
IMAGE_VOCAB = 128
VOCAB = TEXT_VOCAB + IMAGE_VOCAB  # model.vocab_size must be >= this (the default 264 is)
_SUCCESSORS = 4
_P_ABOVE, _P_LEFT = 0.6, 0.25  # image pixel: copy above / left + 1 / else uniform
_KEYS = {"name", "variant", "seq_len", "text_source", "text_order", "text_contexts", "image_width",
         "image_height", "num_validation", "process_seed", "grid_n", "num_train", "maze_seed"}


def corpus_text(split: str) -> np.ndarray:
    """The text dataset's default corpus for `split` (same file split), as text-modality ids:
    ASCII bytes keep their value, everything else (non-ASCII bytes, EOS) becomes 127."""
    stream = text_data.load_token_stream(
        text_data.stdlib_files(), split=split,
        validation_fraction=text_data.DEFAULT_VALIDATION_FRACTION, max_bytes=None)
    return np.where(stream < TEXT_VOCAB, stream, TEXT_VOCAB - 1)


class TwoProcessSource:
    """Record i -> a fresh interleaved text / image sequence of seq_len + 1 tokens."""

    def __init__(self, *, seq_len: int, num_records: int, record_seed: int, process_seed: int = 0,
                 text_order: int = 1, text_contexts: int = 1024, image_width: int = 8,
                 image_height: int = 4, text_stream: np.ndarray | None = None):
        if text_order not in (1, 2):
            raise ValueError(f"data.text_order={text_order}; expected 1 or 2")
        text_contexts = TEXT_VOCAB if text_order == 1 else text_contexts
        rng = np.random.default_rng(process_seed)
        self.successors = rng.integers(0, TEXT_VOCAB, size=(text_contexts, _SUCCESSORS))
        self.successor_p = rng.dirichlet(np.ones(_SUCCESSORS), size=text_contexts)
        self.caption = rng.permutation(IMAGE_VOCAB)  # last text token -> virtual row above row 0
        self.seq_len, self.num_records, self.record_seed = seq_len, num_records, record_seed
        self.text_contexts, self.width, self.height = text_contexts, image_width, image_height
        self.text_order = text_order
        if text_stream is not None and text_stream.size < 2 * (seq_len + 64):
            raise ValueError(f"text corpus of {text_stream.size} bytes is too short for "
                             f"data.seq_len={seq_len}")
        self.text_stream = text_stream  # text-modality ids (`corpus_text`), or None: Markov text

    def __len__(self):
        return self.num_records

    def _context(self, a, b):
        return b if self.text_order == 1 else (a * 131 + b * 7 + 3) % self.text_contexts

    def _text(self, rng, prev: list, length: int) -> list:
        out = list(prev[-2:]) if len(prev) >= 2 else list(rng.integers(0, TEXT_VOCAB, 2))
        start = len(out)
        u = rng.random(length)
        for t in range(length):
            c = self._context(out[-2], out[-1])
            k = min(int(np.searchsorted(np.cumsum(self.successor_p[c]), u[t])), _SUCCESSORS - 1)
            out.append(int(self.successors[c, k]))
        return out[start:]

    def _image(self, rng, last_text: int) -> np.ndarray:
        h, w = self.height, self.width
        grid = np.zeros((h + 1, w), np.int64)
        grid[0] = self.caption[(last_text + np.arange(w)) % IMAGE_VOCAB]
        choice = rng.random((h, w))
        noise = rng.integers(0, IMAGE_VOCAB, (h, w))
        for r in range(1, h + 1):
            for c in range(w):
                left = grid[r, c - 1] + 1 if c > 0 else None
                if choice[r - 1, c] < _P_ABOVE or (left is None and choice[r - 1, c] < 0.85):
                    grid[r, c] = grid[r - 1, c]
                elif left is not None and choice[r - 1, c] < _P_ABOVE + _P_LEFT:
                    grid[r, c] = left % IMAGE_VOCAB
                else:
                    grid[r, c] = noise[r - 1, c]
        return grid[1:].reshape(-1) + TEXT_VOCAB

    def __getitem__(self, index):
        rng = np.random.default_rng([self.record_seed, index])
        tokens, modality = [], []
        if self.text_stream is not None:  # one document read on across the images
            cursor = int(rng.integers(0, self.text_stream.size - self.seq_len - 64))
        while len(tokens) < self.seq_len + 1:
            length = int(rng.integers(16, 49))
            if self.text_stream is None:
                text = self._text(rng, tokens if modality and modality[-1] == 0 else [], length)
            else:
                text = self.text_stream[cursor: cursor + length].tolist()
                cursor += length
            tokens += text
            modality += [0] * len(text)
            image = self._image(rng, text[-1])
            tokens += image.tolist()
            modality += [1] * image.size
        seq = np.asarray(tokens[: self.seq_len + 1], np.int32)
        mod = np.asarray(modality[: self.seq_len + 1], np.int32)
        return {
            "inputs": seq[:-1], "targets": seq[1:],
            "weights": np.ones(self.seq_len, np.float32),
            "modality_ids": mod[:-1], "target_modality_ids": mod[1:],
        }


class MazeModalitySource:
    """Maze records with modality 0 = description tokens, 1 = path region (mazes.path_mask)."""

    def __init__(self, tokens: np.ndarray, n: int, length: int):
        from jaxformers.data import mazes

        self.base = mazes.MazeSource(tokens, n, length)
        self.n = n

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        from jaxformers.data import mazes

        record = self.base[index]
        tokens = record["inputs"]
        modality = mazes.path_mask(tokens, self.n).astype(np.int32)
        return {
            "inputs": tokens, "targets": record["targets"],
            "weights": (record["targets"] != mazes.PAD).astype(np.float32),
            "modality_ids": modality,
            "target_modality_ids": np.append(modality[1:], 0).astype(np.int32),
        }


def _maze_source(data_config, split):
    from jaxformers.data import mazes

    options = {k: data_config[k] for k in ("grid_n", "num_train", "num_validation", "maze_seed",
                                           "seq_len") if k in data_config}
    o = mazes.data_options(options)
    tokens = mazes.maze_splits(o["n"], o["num_train"], o["num_validation"], o["seed"])[split]
    return MazeModalitySource(tokens, o["n"], o["length"])


def build_two_modality(data_config, *, split, seed, batch_size, process_index, process_count):
    """data.variant: "synthetic" (seq_len, text_source "markov" | "corpus", text_order 1,
    text_contexts 1024 (order 2 only), image_width 8, image_height 4, num_validation 256 records,
    process_seed 0) or "mazes" (grid_n,
    num_train, num_validation, maze_seed, seq_len as in data/mazes.py)."""
    unknown = set(data_config.keys()) - _KEYS
    if unknown:
        raise ValueError(f"unknown config key(s) data.{sorted(unknown)}; valid: {sorted(_KEYS)}")
    variant = data_config.get("variant", "synthetic")
    if variant == "synthetic":
        text_source = data_config.get("text_source", "markov")
        if text_source not in ("markov", "corpus"):
            raise ValueError(f"data.text_source={text_source!r}; expected 'markov' or 'corpus'")
        stream = corpus_text(split) if text_source == "corpus" else None
        source = TwoProcessSource(
            seq_len=data_config.seq_len,
            num_records=2**31 - 1 if split == "train" else data_config.get("num_validation", 256),
            record_seed=1 if split == "validation" else 0,
            process_seed=data_config.get("process_seed", 0),
            text_order=data_config.get("text_order", 1),
            text_contexts=data_config.get("text_contexts", 1024),
            image_width=data_config.get("image_width", 8),
            image_height=data_config.get("image_height", 4),
            text_stream=stream,
        )
    elif variant == "mazes":
        source = _maze_source(data_config, split)
    else:
        raise ValueError(f"data.variant={variant!r}; expected 'synthetic' or 'mazes'")
    return batched_iterator(
        source, split=split, seed=seed, batch_size=batch_size,
        process_index=process_index, process_count=process_count,
    )
