"""Claims about greedy maze decoding and the "maze_navigation" evaluator (Nolte et al. 2024)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.data import mazes
from jaxformers.data.maze_navigation import evaluate_navigation
from jaxformers.models import encdec

N = 4


def successor_table(tokens: np.ndarray, n: int) -> np.ndarray:
    """[B, V]: the true next token after each token of the path (<PATH_START> -> start cell,
    goal -> <PATH_END>); PAD elsewhere."""
    p = mazes.prefix_len(n)
    table = np.full((len(tokens), mazes.vocab_size(n)), mazes.PAD, np.int32)
    for b, t in enumerate(tokens):
        end = int(np.flatnonzero(t == mazes.PATH_END)[0])
        seq = t[p - 1 : end + 1]
        table[b, seq[:-1]] = seq[1:]
    return table


class PathOracle(nn.Module):
    """Encoder-decoder stand-in that predicts the true successor of the token just before the
    query, and only if that token is visible: it succeeds only if the decoding loop feeds its own
    outputs back and marks them visible."""

    vocab: int

    def __call__(self, tokens, visible, *, query_positions, deterministic=True):
        table = self.get_variable("constants", "table")  # [B, V] successor_table
        prev_pos = query_positions - 1
        prev = jnp.take_along_axis(tokens, prev_pos, 1)
        seen = jnp.take_along_axis(visible, prev_pos, 1)
        nxt = jnp.where(seen, jnp.take_along_axis(table, prev, 1), mazes.UNK)
        return 10.0 * jax.nn.one_hot(nxt, self.vocab)


def test_greedy_decoding_with_a_true_next_cell_oracle_is_exact():
    tokens = mazes.generate_mazes(24, N, seed=4)
    table = successor_table(tokens, N)
    oracle = PathOracle(vocab=table.shape[1])

    def decode(model, variables, prompts, steps):
        rows = [int(np.flatnonzero((tokens[:, : prompts.shape[1]] == r).all(1))[0])
                for r in prompts]
        variables = {"constants": {"table": jnp.asarray(table[rows])}}
        return np.asarray(encdec.greedy_decode(model, variables, jnp.asarray(prompts), steps=steps))

    metrics = evaluate_navigation(oracle, {}, tokens, N, batch_size=8, decode_fn=decode)
    assert metrics == {"exact_match": 1.0, "token_accuracy": 1.0, "valid_path": 1.0}


def test_greedy_decoding_of_an_untrained_model_runs_for_both_model_families():
    from jaxformers.config import model_config_from
    from jaxformers.models.registry import build_model

    tokens = mazes.generate_mazes(6, N, seed=5)
    cfg = dict(vocab_size=mazes.vocab_size(N), embed_dim=16, num_layers=1, num_heads=2,
               max_len=mazes.seq_len(N))
    for family in ("encdec", "decoder"):
        model = build_model(family, model_config_from(cfg))
        t = jnp.asarray(tokens[:1])
        init = jax.jit(model.init)  # one compile, not one per primitive
        variables = (init(jax.random.PRNGKey(0), t, jnp.ones_like(t, bool))
                     if family == "encdec" else init(jax.random.PRNGKey(0), t))
        metrics = evaluate_navigation(model, variables, tokens, N, batch_size=6)
        assert set(metrics) == {"exact_match", "token_accuracy", "valid_path"}
        assert 0.0 <= metrics["token_accuracy"] <= 1.0


def test_mot_decoder_decodes_the_path_region_with_the_path_modality_weights():
    from jaxformers.config import model_config_from
    from jaxformers.data.maze_navigation import decode_paths
    from jaxformers.models.registry import build_model

    tokens = mazes.generate_mazes(3, N, seed=6)
    p = mazes.prefix_len(N)
    cfg = dict(vocab_size=mazes.vocab_size(N), embed_dim=16, num_layers=1, num_heads=2,
               max_len=mazes.seq_len(N), num_modalities=2)
    model = build_model("decoder", model_config_from(cfg))
    modality = jnp.asarray(mazes.path_mask(tokens, N), jnp.int32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(tokens), modality_ids=modality)
    steps = 6
    out = decode_paths(model, variables, tokens[:, :p], steps)
    full = np.concatenate([tokens[:, :p], out], 1)
    ids = np.concatenate([np.zeros((3, p), np.int32), np.ones((3, steps), np.int32)], 1)
    logits = jax.jit(model.apply)(variables, jnp.asarray(full[:, :-1]),
                                  modality_ids=jnp.asarray(ids[:, :-1]))
    np.testing.assert_array_equal(np.asarray(logits[:, p - 1 :].argmax(-1)), out)


def test_evaluator_decodes_the_requested_split(monkeypatch):
    import ml_collections
    import pytest

    from jaxformers.data import maze_navigation

    seen = {}
    monkeypatch.setattr(maze_navigation, "evaluate_navigation",
                        lambda model, variables, tokens, n, batch_size: seen.update(t=tokens) or {})
    data = dict(name="mazes", grid_n=N, num_train=40, num_validation=8, eval_mazes=5)
    splits = mazes.maze_splits(N, 40, 8, 42)
    for split, want in [(None, "validation"), ("train", "train"), ("validation", "validation")]:
        cfg = ml_collections.ConfigDict({"data": dict(data, **({"eval_split": split} if split else {}))})
        maze_navigation.maze_navigation(None, {}, cfg)
        np.testing.assert_array_equal(seen["t"], splits[want][:5])
    cfg = ml_collections.ConfigDict({"data": dict(data, eval_split="test")})
    with pytest.raises(ValueError, match="data.eval_split='test'"):
        maze_navigation.maze_navigation(None, {}, cfg)
    with pytest.raises(ValueError, match="data.eval_split='test'"):  # at startup, with the keys
        mazes.data_options(cfg.data)
