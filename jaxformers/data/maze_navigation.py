"""The "maze_navigation" evaluator: greedy path decoding on held-out mazes (Nolte et al. 2024).

Registered in `train.evaluators`, so `config.evaluators = ("maze_navigation",)` reports
nav_exact_match / nav_token_accuracy / nav_valid_path at every evaluation. The first
`data.eval_mazes` mazes of `data.eval_split` ("validation", the default, or "train" to measure how
much of the training set a model solves) are decoded greedily, one token per step, left to right.
`data.eval_file` replaces them with every maze of a text file (all of them, whatever
`data.eval_mazes` says), one per line in maze-dataset words (data/maze_words.py), so mazes made by
other tools can be scored. `nav_mazes` reports how many mazes were scored. The encoder-decoder (MLM-U)
re-encodes the visible tokens each step (`encdec.greedy_decode`); a decoder-only model (next
token) decodes with its KV cache (`sampling.generate`, temperature 0);
a Mixture-of-Transformers decoder reads the prompt as modality 0 (description) and every
generated token as modality 1 (path region), as data/two_modality.py's "mazes" variant trains it.
Mazes are sorted by path length and batched, and each batch decodes a fixed number of steps
(its longest path region, rounded up to 8), so each shape compiles once per run.
"""

import jax
import numpy as np

from jaxformers.data import maze_words, mazes
from jaxformers.models import encdec, sampling


def navigation_metrics(predicted: np.ndarray, tokens: np.ndarray, n: int) -> dict:
    """Score decoded path regions against the truth (Nolte et al. 2024, §4: "navigation accuracy").

    predicted: [B, S] tokens written after <PATH_START>; tokens: [B, T] the true sequences.
    exact_match ("navigation accuracy"): every token of the true path region (cells + <mazes.PATH_END>)
    reproduced; token_accuracy: over those tokens; valid_path: the predicted cells (up to the first
    <mazes.PATH_END>) form a valid start -> goal path (equals exact_match on DFS mazes: unique paths).
    """
    predicted, tokens = np.asarray(predicted), np.asarray(tokens)
    p, steps = mazes.prefix_len(n), predicted.shape[1]
    truth = tokens[:, p : p + steps]
    region = mazes.path_mask(tokens, n)[:, p : p + steps]
    if mazes.path_mask(tokens, n)[:, p + steps :].any():
        raise ValueError(f"{steps} decoded tokens do not cover every true path region")
    hit = (predicted == truth) & region
    valid = 0
    for row, seq in zip(predicted, tokens, strict=True):
        end = np.flatnonzero(row == mazes.PATH_END)
        cells = row[: end[0]] if end.size else row
        if ((cells < mazes.NUM_SPECIAL) | (cells >= mazes.NUM_SPECIAL + n * n)).any():
            continue
        maze = mazes.decode_tokens(seq, n)
        path = np.stack(np.divmod(cells.astype(np.int64) - mazes.NUM_SPECIAL, n), -1)
        valid += bool(end.size) and mazes.is_valid_path(maze["connections"], maze["start"],
                                                   maze["goal"], path)
    return {
        "exact_match": float((hit == region).all(1).mean()),
        "token_accuracy": float(hit.sum() / max(region.sum(), 1)),
        "valid_path": valid / len(tokens),
    }


def decode_paths(model, variables, prompts: np.ndarray, steps: int) -> np.ndarray:
    """prompts [B, P] -> [B, steps] greedy tokens, for an encoder-decoder or a causal decoder."""
    variables = {k: v for k, v in variables.items() if k in ("params", "constants")}
    prompts = np.asarray(prompts, np.int32)
    if isinstance(model, encdec.EncoderDecoder):
        out = encdec.greedy_decode(model, variables, prompts, steps=steps)
    else:
        routing = {}
        if model.cfg.num_modalities > 1:
            routing = dict(prompt_modality_ids=np.zeros_like(prompts),
                           modality_of_token=sampling.ConstantModality(1))
        out = sampling.generate(model, variables, prompts, jax.random.PRNGKey(0),
                                max_new_tokens=steps, temperature=0.0,
                                **routing)[:, prompts.shape[1]:]
    return np.asarray(jax.device_get(out))


def evaluate_navigation(model, variables, tokens: np.ndarray, n: int, batch_size: int = 64,
                        decode_fn=decode_paths) -> dict:
    """Greedy-decode the paths of `tokens` [N, T] and score them (navigation_metrics)."""
    p = mazes.prefix_len(n)
    lengths = mazes.path_mask(tokens, n).sum(1)
    order = np.argsort(lengths, kind="stable")
    predicted = np.full((len(tokens), tokens.shape[1] - p), mazes.PAD, np.int32)
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        steps = min(-(-int(lengths[idx].max()) // 8) * 8, tokens.shape[1] - p)
        predicted[idx, :steps] = decode_fn(model, variables, tokens[idx, :p], steps)
    return navigation_metrics(predicted, tokens, n)


def maze_navigation(model, variables, config) -> dict:
    o = mazes.data_options(config.data)
    if o["eval_file"] is not None:  # every maze of the file (to score fewer, pass a shorter file)
        tokens = maze_words.read_words_file(o["eval_file"], o["n"])
    else:
        tokens = mazes.maze_splits(o["n"], o["num_train"], o["num_validation"], o["seed"])
        tokens = tokens[o["eval_split"]][: config.data.get("eval_mazes", 256)]
    metrics = evaluate_navigation(model, variables, tokens, o["n"],
                                  batch_size=config.data.get("eval_batch_size", 64))
    return {f"nav_{k}": v for k, v in metrics.items()} | {"nav_mazes": len(tokens)}
