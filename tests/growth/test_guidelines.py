"""G_stack guidelines: the growth-timing fit reproduces the paper's Table 4; speed-up (App. B.2)."""

import math
import warnings

import pytest

from jaxformers.growth import guidelines as gl


@pytest.mark.parametrize(
    "params,tokens,want_billions",  # Du et al. 2024, arXiv 2405.15319: Table 4 with C = 6 N D
    [(8e9, 15e12, 6.58), (7e9, 2e12, 11.11), (13e9, 2e12, 15.84), (70e9, 2e12, 42.48)],
)
def test_growth_tokens_reproduce_table_4(params, tokens, want_billions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = gl.growth_tokens(params, gl.training_flops(params, tokens))
    assert d / 1e9 == pytest.approx(want_billions, abs=0.01)


def test_growth_tokens_warn_far_outside_the_fit():
    with pytest.warns(UserWarning, match="outside the range"):
        gl.growth_tokens(2e6, gl.training_flops(2e6, 1e6))
    with pytest.raises(ValueError, match="num_params"):
        gl.growth_tokens(0, 1e20)


def test_speedup_and_flops_to_reach():
    assert gl.RECOMMENDED_GROWTH_FACTOR == 4
    assert gl.speedup(100.0, 50.0) == pytest.approx(1.0)  # half the compute: +100%
    flops, losses = [0, 10, 20, 30], [4.0, 3.0, 2.0, 1.5]
    assert gl.flops_to_reach(flops, losses, 2.5) == pytest.approx(15.0)
    assert gl.flops_to_reach(flops, losses, 4.5) == 0.0
    assert math.isinf(gl.flops_to_reach(flops, losses, 1.0))


def test_decoder_flops_count_every_matmul_but_the_embedding_lookup():
    import numpy as np

    params = {"embed": {"embedding": np.zeros((264, 128))}, "head": {"kernel": np.zeros((128, 264))},
              "layers": {"w": np.zeros((8, 128, 100))}, "final_norm": {"scale": np.zeros((1, 128))}}
    n = 128 * 264 + 8 * 128 * 100 + 128
    assert gl.decoder_train_flops_per_token(params, 8, 64, 128) == 6 * n + 6 * 8 * 64 * 128
    tied = {k: v for k, v in params.items() if k != "head"}  # the head is embed^T
    assert gl.decoder_train_flops_per_token(tied, 8, 64, 128) == 6 * n + 6 * 8 * 64 * 128
