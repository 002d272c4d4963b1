"""Matmul FLOP counting: exact on known programs, linear in depth for the scanned decoder."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.testing import tiny_train_config
from jaxformers.train.experiment import Experiment
from jaxformers.train.flops import matmul_flops


def test_a_matmul_counts_2mkn_and_a_scan_counts_every_iteration():
    x, w = jnp.ones((3, 5, 7)), jnp.ones((7, 11))
    assert matmul_flops(lambda x, w: x @ w, x, w) == 2 * 3 * 5 * 7 * 11

    def scanned(x, w):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=6)[0]

    square = jnp.ones((7, 7))
    assert matmul_flops(scanned, x, square) == 6 * 2 * 3 * 5 * 7 * 7
    # Gradient of a matmul w.r.t. both operands: forward + two backward matmuls.
    grad = jax.grad(lambda x, w: jnp.sum(x @ w), argnums=(0, 1))
    assert matmul_flops(grad, x, w) == 3 * 2 * 3 * 5 * 7 * 11


def test_cond_counts_the_most_expensive_branch():
    x = jnp.ones((4, 8))
    f = lambda p, x: jax.lax.cond(p, lambda x: x @ x.T @ x, lambda x: x, x)
    assert matmul_flops(f, True, x) == 2 * 4 * 8 * 4 + 2 * 4 * 4 * 8


def test_shard_map_counts_its_body_once_per_shard():
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((2, 2), ("a", "b"), devices=jax.devices()[:4],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    f = jax.shard_map(lambda x: x @ x.T, mesh=mesh, in_specs=P("a"), out_specs=P("a"))
    # Each of the 4 devices multiplies its [4, 4] shard (replicated over "b").
    assert matmul_flops(f, jnp.ones((8, 4))) == 4 * 2 * 4 * 4 * 4


def _train_step_flops(num_layers):
    """The loop's count (Experiment.compile_train_step), traced only: no XLA compile."""
    exp = Experiment(tiny_train_config(**{"model.num_layers": num_layers}))
    return matmul_flops(exp.train_step, exp.abstract_state, exp.global_batch(exp.example_batch))


def test_decoder_train_step_flops_grow_linearly_with_depth_and_match_6n():
    f1, f2, f4 = (_train_step_flops(n) for n in (1, 2, 4))
    per_layer = f2 - f1
    assert per_layer > 0
    np.testing.assert_allclose(f4 - f2, 2 * per_layer, rtol=1e-9)
    cfg = tiny_train_config()
    params = Experiment(cfg).abstract_state.params["layers"]
    # Matmul kernels are [layers, modality, in, out]; norm scales [layers, modality, dim] are not.
    layer_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(params) if x.ndim == 4)
    tokens = cfg.batch_size * cfg.data.seq_len
    # 6 N per token for the weights plus the attention score/value matmuls (3 x 2 x 2 T^2 d).
    attention = 3 * 2 * 2 * cfg.batch_size * cfg.data.seq_len**2 * cfg.model.embed_dim
    np.testing.assert_allclose(per_layer, 6 * layer_params * tokens + attention, rtol=1e-6)
