"""Claims about the MLM-U mask and loss (Nolte et al. 2024 §3 eq. 2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.config import model_config_from
from jaxformers.data import mazes
from jaxformers.models.registry import build_model
from jaxformers.objectives.mlm_u import mlm_u_loss, mlm_u_mask
from jaxformers.objectives.registry import get_objective


def _layout(batch=4, prefix=10, path=20, pad=6):
    t = prefix + path + pad
    pos = jnp.arange(t)[None].repeat(batch, 0)
    return (pos >= prefix) & (pos < prefix + path), pos < prefix


def test_mask_never_hides_the_prefix_nor_shows_padding():
    path, prefix = _layout()
    for seed in range(20):
        visible, predict, _ = mlm_u_mask(jax.random.PRNGKey(seed), path, prefix)
        assert bool(jnp.all(visible[prefix]))  # context always visible ...
        assert not bool(jnp.any(predict & ~path))  # ... and never predicted
        assert not bool(jnp.any((visible | predict) & ~(path | prefix)))  # padding: neither
        assert not bool(jnp.any(visible & predict))
        np.testing.assert_array_equal(visible | predict, path | prefix)


def test_one_uniform_rate_per_sequence():
    """r ~ U(0,1) once per sequence: the rates pass a KS test against U(0,1) (p = 0.01 critical
    value 1.63/sqrt(B)), each sequence's visible fraction of path tokens tracks its r (binomial
    error, 5 sigma), and the masked fraction varies across sequences with variance ~ 1/12 (a
    single fixed rate would give p(1-p)/T ~ 0.001)."""
    batch, tokens = 4000, 400
    path, prefix = _layout(batch, prefix=1, path=tokens, pad=0)
    visible, predict, rate = mlm_u_mask(jax.random.PRNGKey(0), path, prefix)
    rate = np.sort(np.asarray(rate))
    ks = np.max(np.abs(rate - (np.arange(1, batch + 1) - 0.5) / batch))
    assert ks < 1.63 / np.sqrt(batch)
    _, _, rate = mlm_u_mask(jax.random.PRNGKey(0), path, prefix)
    frac_visible = np.asarray((visible & path).sum(1) / tokens)
    sigma = np.sqrt(np.asarray(rate) * (1 - np.asarray(rate)) / tokens)
    assert np.all(np.abs(frac_visible - np.asarray(rate)) <= 5 * sigma + 1e-3)
    masked = np.asarray(predict.sum(1) / tokens)
    assert abs(masked.var() - 1 / 12) < 0.01
    assert abs(masked.mean() - 0.5) < 0.02


def test_loss_counts_only_masked_path_tokens():
    path, prefix = _layout(batch=3)
    _, predict, _ = mlm_u_mask(jax.random.PRNGKey(1), path, prefix)
    logits = jax.random.normal(jax.random.PRNGKey(2), path.shape + (11,))
    targets = jax.random.randint(jax.random.PRNGKey(3), path.shape, 0, 11)
    grad = jax.grad(lambda x: mlm_u_loss(x, targets, predict)[0])(logits)
    touched = np.asarray(jnp.abs(grad).sum(-1) > 0)
    np.testing.assert_array_equal(touched, np.asarray(predict))
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    expected = (nll * predict).sum() / predict.sum()  # averaged over predicted tokens of the batch
    np.testing.assert_allclose(mlm_u_loss(logits, targets, predict)[0], expected, rtol=1e-6)


def test_objective_on_maze_batches_predicting_only_the_path_region():
    """Querying only the path region gives the same loss as querying every position."""
    n = 3
    it = mazes.build_mazes(dict(name="mazes", grid_n=n, num_train=64, num_validation=16),
                           split="train", seed=0, batch_size=4, process_index=0, process_count=1)
    batch = {k: jnp.asarray(v) for k, v in next(it).items()}
    cfg = model_config_from(dict(vocab_size=mazes.vocab_size(n), embed_dim=32, num_layers=1,
                                 num_heads=2, max_len=64))
    model = build_model("encdec", cfg)
    init = jax.jit(functools.partial(model.init, method=type(model).init_from_batch))
    variables = init(jax.random.PRNGKey(0), batch)
    objective = get_objective("mlm_u")
    rng = jax.random.PRNGKey(4)
    loss = jax.jit(lambda v, b: objective(model, v, b, rng=rng, step=0, train=True))
    loss_q, metrics = loss(variables, batch)
    full = {k: v for k, v in batch.items() if k != "query_positions"}
    loss_all, _ = loss(variables, full)
    np.testing.assert_allclose(loss_q, loss_all, rtol=1e-5)
    assert np.isfinite(float(loss_q)) and 0 < float(metrics["masked_fraction"]) <= 1
