"""Synthetic induction stories (`config.data.name = "induction"`) and the "induction_accuracy"
evaluator: a small stand-in for the induction probe of Gloeckle et al. 2024 (arXiv 2404.19737,
§4.1 / App. J: children's stories whose character names are random two-token names; the score is
the accuracy on the second token of a name already mentioned).

A fixed toy language (drawn once from `data.language_seed`, shared by every split): a lexicon of
`data.lexicon_words` words, each 1-3 filler tokens, and a word-bigram table (every word has 2
possible successors). A story is a run of sentences `NAME word ... .`: a two-token name of one
of the story's `data.names_per_story` characters, 1 to `data.sentence_words` words, the full stop.
Each story draws its own names (2 x names_per_story distinct tokens from the `data.name_tokens`
name tokens), so the second token of a name is unpredictable at its first mention and predictable
only by copying from an earlier mention (an induction head) at every later one.

Token ids: 0 = ".", 1..filler_tokens = filler, then the name tokens (`vocab_size(data_config)`).
Batches: inputs, targets [B, seq_len] int32 (a story of seq_len + 1 tokens, shifted), every target
scored. Story `index` of a split is a pure function of (split seed, index): train draws fresh
indices from a grain shuffle of 2^24 stories (resumable through grain's iterator state), validation
is the fixed first `data.num_validation` stories of another seed.
"""

import functools

import jax
import numpy as np

from jaxformers.config_fields import ConfigError
from jaxformers.data.text import batched_iterator

DEFAULTS = dict(
    seq_len=64, filler_tokens=24, name_tokens=32, lexicon_words=24, names_per_story=2,
    sentence_words=3, language_seed=0, num_validation=512, eval_stories=256,
)  # fmt: skip
_KEYS = set(DEFAULTS) | {"name"}
_SPLIT_SEEDS = {"train": 0, "validation": 1}
_TRAIN_STORIES = 1 << 24
STOP = 0


def options(data_config) -> dict:
    """data_config (ConfigDict or dict) -> every field with its default, validated."""
    unknown = set(data_config.keys()) - _KEYS
    if unknown:
        raise ConfigError(f"unknown config key(s) data.{sorted(unknown)}; valid: {sorted(_KEYS)}")
    opts = {k: int(data_config.get(k, v)) for k, v in DEFAULTS.items()}
    for key in (
        "seq_len",
        "filler_tokens",
        "lexicon_words",
        "sentence_words",
        "num_validation",
        "eval_stories",
    ):
        if opts[key] < 1:
            raise ConfigError(f"config.data.{key}={opts[key]} must be >= 1")
    if opts["names_per_story"] < 1 or 2 * opts["names_per_story"] > opts["name_tokens"]:
        raise ConfigError(
            f"config.data.names_per_story={opts['names_per_story']} must be >= 1 and at most "
            f"data.name_tokens / 2 = {opts['name_tokens'] // 2} (each name uses 2 distinct tokens)"
        )
    return opts


def vocab_size(data_config) -> int:
    """The model.vocab_size these stories need: the stop, the filler and the name tokens."""
    opts = options(data_config)
    return 1 + opts["filler_tokens"] + opts["name_tokens"]


class Language:
    """The fixed lexicon and word bigrams of `language_seed`."""

    def __init__(self, opts: dict):
        rng = np.random.default_rng([opts["language_seed"], 7])
        lengths = rng.integers(1, 4, size=opts["lexicon_words"])
        self.words = [1 + rng.integers(0, opts["filler_tokens"], size=k) for k in lengths]
        self.successors = rng.integers(0, opts["lexicon_words"], size=(opts["lexicon_words"], 2))
        self.first_name_token = 1 + opts["filler_tokens"]


class StorySource:
    """Random-access stories: story(index) -> (tokens [seq_len + 1], repeat [seq_len],
    first [seq_len]); repeat / first mark the targets that are a name's second token at a later /
    the first mention of that name."""

    def __init__(self, opts: dict, *, split: str, length: int):
        if split not in _SPLIT_SEEDS:
            raise ValueError(f"split={split!r}; expected 'train' or 'validation'")
        self.opts, self.language, self.length = opts, Language(opts), length
        self.seed = (opts["language_seed"], _SPLIT_SEEDS[split])

    def __len__(self):
        return self.length

    def story(self, index: int):
        opts, lang = self.opts, self.language
        rng = np.random.default_rng(self.seed + (int(index),))
        k = opts["names_per_story"]
        drawn = lang.first_name_token + rng.choice(opts["name_tokens"], size=2 * k, replace=False)
        names = drawn.reshape(k, 2)
        total = opts["seq_len"] + 1
        tokens, repeat, first, seen = [], [], [], set()
        while len(tokens) < total:
            who = int(rng.integers(k))
            # the target of input position len(tokens) is the name's second token
            (repeat if who in seen else first).append(len(tokens))
            seen.add(who)
            tokens.extend(names[who])
            word = int(rng.integers(opts["lexicon_words"]))
            for _ in range(int(rng.integers(1, opts["sentence_words"] + 1))):
                tokens.extend(lang.words[word])
                word = int(lang.successors[word, rng.integers(2)])
            tokens.append(STOP)
        tokens = np.asarray(tokens[:total], np.int32)
        repeat_mask = np.zeros(opts["seq_len"], bool)
        first_mask = np.zeros(opts["seq_len"], bool)
        repeat_mask[[p for p in repeat if p < opts["seq_len"]]] = True
        first_mask[[p for p in first if p < opts["seq_len"]]] = True
        return tokens, repeat_mask, first_mask

    def __getitem__(self, index):
        tokens, _, _ = self.story(index)
        return {"inputs": tokens[:-1], "targets": tokens[1:]}


def build(data_config, *, split, seed, batch_size, process_index, process_count):
    """Story batches; `seed` (config.seed) shuffles the training stories."""
    opts = options(data_config)
    length = _TRAIN_STORIES if split == "train" else opts["num_validation"]
    source = StorySource(opts, split=split, length=length)
    return batched_iterator(source, split=split, seed=seed, batch_size=batch_size,
                            process_index=process_index, process_count=process_count)  # fmt: skip


def eval_stories(data_config, count: int | None = None):
    """The first `count` (default data.eval_stories) validation stories: tokens [E, seq_len + 1],
    repeat, first [E, seq_len] (see StorySource.story)."""
    opts = options(data_config)
    source = StorySource(opts, split="validation", length=opts["num_validation"])
    rows = [source.story(i) for i in range(count or opts["eval_stories"])]
    return tuple(np.stack(column) for column in zip(*rows, strict=True))


@functools.partial(jax.jit, static_argnums=0)
def _greedy_next(model, variables, inputs):
    return model.apply(variables, inputs).argmax(-1)


def induction_accuracy(model, variables, config) -> dict:
    """Evaluator "induction_accuracy": head 1's (the plain call's) argmax accuracy on the second
    token of a repeated name (induction_accuracy) and of a first mention (first_mention_accuracy,
    chance level: nothing earlier says which token it is), over data.eval_stories stories."""
    tokens, repeat, first = eval_stories(config.data)
    predicted = np.asarray(_greedy_next(model, variables, tokens[:, :-1]))
    hit = predicted == tokens[:, 1:]
    return {
        "induction_accuracy": float(hit[repeat].mean()),
        "first_mention_accuracy": float(hit[first].mean()),
        "induction_positions": float(repeat.sum()),
    }
