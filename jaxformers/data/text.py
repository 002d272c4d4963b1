"""Byte-level text packed into fixed-length sequences (vocab 256 bytes + specials).

Default corpus: the running interpreter's standard-library sources (real text on every machine,
nothing to download). `config.data.paths` (a glob, or a list of globs) reads the user's files
instead. Files are split into train / validation by a hash of their path, so the split is
deterministic and never shares a file.

Packed documents (`config.data.segment_ids`, default True): each window also yields
`segment_ids` [T] int32 (1, 2, ... per document within the window) and `positions` [T] int32
(restarting at 0 at each document start), which the models turn into attention masks, state
resets and per-document RoPE (MaxText's `<k>_segmentation` / `<k>_position`). Convention: the
EOS separator *opens* the next document, as its BOS. The last byte of a document still predicts
the EOS, the EOS predicts the next document's first byte, and no token sees an earlier document;
every target stays scored, so masked and unmasked runs score the same tokens. The first document
of a window is the tail of one that began earlier: its positions count from the window start.
`segment_ids=False` is the leaky packing of runs before this option (a checkpoint written then
resumes with it, `train/checkpoint.LEGACY_DEFAULTS`).
"""

import glob
import os
import sysconfig
import zlib

import grain
import numpy as np

from jaxformers.config_fields import ConfigError

EOS_ID = 257  # ids 0-255 are bytes, 256 is reserved for padding

DEFAULT_VALIDATION_FRACTION = 0.05  # of the files, by hash of their path
_TEXT_KEYS = {"name", "seq_len", "paths", "validation_fraction", "max_bytes", "seed", "segment_ids"}


def stdlib_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    skip = {"test", "tests", "site-packages", "idlelib", "__pycache__", "lib2to3", "turtledemo"}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return files


def resolve_files(paths) -> list[str]:
    if paths is None:
        return stdlib_files()
    patterns = [paths] if isinstance(paths, str) else list(paths)
    files = sorted({f for p in patterns for f in glob.glob(os.path.expanduser(p), recursive=True)})
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise ValueError(f"config.data.paths={paths!r} matches no files")
    return files


def is_validation_file(path: str, validation_fraction: float) -> bool:
    """Deterministic split by CRC32 of the file name (stable across machines and runs)."""
    bucket = zlib.crc32(os.path.basename(path).encode() + b"|" + path.encode()[-64:]) % 10_000
    return bucket < validation_fraction * 10_000


def load_token_stream(files, *, split: str, validation_fraction: float, max_bytes: int | None):
    """Concatenate the split's files as bytes, each followed by EOS -> uint16 token array."""
    chunks, total = [], 0
    for path in files:
        if is_validation_file(path, validation_fraction) != (split == "validation"):
            continue
        with open(path, "rb") as f:
            data = np.frombuffer(f.read(), dtype=np.uint8).astype(np.uint16)
        chunks.append(data)
        chunks.append(np.array([EOS_ID], np.uint16))
        total += data.size + 1
        if max_bytes is not None and total >= max_bytes:
            break
    if not chunks:
        raise ValueError(f"no files fall in the {split!r} split; add files or change the fraction")
    return np.concatenate(chunks)[:max_bytes]


def document_segments(inputs: np.ndarray, eos_id: int = EOS_ID):
    """(segment_ids, positions) [T] int32 of one packed window of input tokens.

    A new document starts at every EOS after the first token (the separator opens the document
    it precedes): segment ids count documents from 1, positions restart at 0 at each start.
    """
    starts = inputs == eos_id
    starts[0] = True
    segment_ids = np.cumsum(starts, dtype=np.int32)
    index = np.arange(inputs.size, dtype=np.int32)
    start_of_segment = np.maximum.accumulate(np.where(starts, index, 0))
    return segment_ids, index - start_of_segment


class PackedWindows:
    """Random-access source: record i = tokens[i*L : i*L + L + 1] -> inputs / targets, and
    per-document segment_ids / positions of the inputs when `segment_ids` is True."""

    def __init__(self, tokens: np.ndarray, seq_len: int, *, segment_ids: bool = True):
        self.tokens, self.seq_len, self.segment_ids = tokens, seq_len, segment_ids
        self.num_records = (tokens.size - 1) // seq_len
        if self.num_records < 1:
            raise ValueError(f"corpus of {tokens.size} tokens is shorter than seq_len={seq_len}")

    def __len__(self):
        return self.num_records

    def __getitem__(self, index):
        start = index * self.seq_len
        window = self.tokens[start : start + self.seq_len + 1].astype(np.int32)
        record = {"inputs": window[:-1], "targets": window[1:]}
        if self.segment_ids:
            record["segment_ids"], record["positions"] = document_segments(record["inputs"])
        return record


# Each element read is a whole batch, made in a millisecond or two, while a training step takes tens
# of milliseconds or more: two reader threads and 8 batches ahead keep the step fed. grain's default
# (16 threads, 500 elements ahead) reads up to 500 batches at every iterator start, validation ones
# included, on the cores the step needs: it nearly doubled a tiny test run's CPU time (3.4 -> 1.9 s).
# The iterator's state (the next index) does not depend on these options.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def batched_iterator(source, *, split, seed, batch_size, process_index, process_count):
    """Shuffle (train), repeat (train), shard per host, batch -> checkpointable grain iterator."""
    ds = grain.MapDataset.source(source)
    if split == "train":
        ds = ds.shuffle(seed=seed).repeat()
    ds = ds[process_index::process_count]
    ds = ds.batch(batch_size, drop_remainder=True)
    return iter(ds.to_iter_dataset(READ_OPTIONS))


def build_text(data_config, *, split, seed, batch_size, process_index, process_count):
    """Byte-level LM batches: inputs, targets [batch, seq_len], and segment_ids, positions
    [batch, seq_len] unless data.segment_ids is False."""
    unknown = set(data_config.keys()) - _TEXT_KEYS
    if unknown:
        raise ValueError(f"unknown config key(s) data.{sorted(unknown)}; valid: {sorted(_TEXT_KEYS)}")
    tokens = load_token_stream(
        resolve_files(data_config.get("paths")),
        split=split,
        validation_fraction=data_config.get("validation_fraction", DEFAULT_VALIDATION_FRACTION),
        max_bytes=data_config.get("max_bytes"),
    )
    segment_ids = data_config.get("segment_ids", True)
    if not isinstance(segment_ids, bool):
        raise ConfigError(f"config.data.segment_ids={segment_ids!r}; expected True or False")
    source = PackedWindows(tokens, data_config.seq_len, segment_ids=segment_ids)
    return batched_iterator(
        source,
        split=split,
        seed=seed,
        batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
    )


class MarkovSource:
    """Tiny synthetic LM data for tests: a fixed sparse random Markov chain over `vocab` tokens.

    Each token has 2 possible successors, so the achievable loss is ~log(2) nats, far below the
    uniform log(vocab): a model that learns anything shows it within a few steps.
    """

    def __init__(self, *, vocab: int, seq_len: int, num_records: int, seed: int):
        rng = np.random.default_rng(seed)
        self.successors = rng.integers(0, vocab, size=(vocab, 2))
        self.vocab, self.seq_len, self.num_records, self.seed = vocab, seq_len, num_records, seed

    def __len__(self):
        return self.num_records

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        seq = np.empty(self.seq_len + 1, np.int32)
        seq[0] = rng.integers(self.vocab)
        choices = rng.integers(0, 2, size=self.seq_len)
        for t in range(self.seq_len):
            seq[t + 1] = self.successors[seq[t], choices[t]]
        return {"inputs": seq[:-1], "targets": seq[1:]}


def build_synthetic(data_config, *, split, seed, batch_size, process_index, process_count):
    """data.vocab (default 32), data.seq_len, data.num_records; validation uses other records."""
    vocab = data_config.get("vocab", 32)
    num = data_config.get("num_records", 4096)
    source = MarkovSource(
        vocab=vocab,
        seq_len=data_config.seq_len,
        num_records=num,
        seed=1 if split == "validation" else 0,
    )
    return batched_iterator(
        source,
        split=split,
        seed=seed,
        batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
    )
