"""The 'outliers' evaluator: per-layer inf-norm and kurtosis of the sown block outputs."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.config import model_config_from
from jaxformers.models.decoder import Decoder
from jaxformers.ops import outliers
from jaxformers.testing import tiny_train_config
from jaxformers.train.evaluators import get_evaluator
from jaxformers.train.outliers import block_statistics


def test_outlier_metrics_per_layer_and_summary_match_the_sown_block_outputs():
    config = tiny_train_config(**{"model.num_layers": 2, "model.attention.gate": "per_head"})
    config.evaluators = ("outliers",)
    config.outlier_batches = 1
    model = Decoder(model_config_from(config.model))
    tokens = jnp.ones((2, 16), jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), tokens)
    results = get_evaluator("outliers")(model, variables, config)
    per_layer = [k for k in results if k.endswith(("_l0", "_l1"))]
    assert len(per_layer) == 3 * 2 * 2  # {mixer,ffn,residual} x {inf_norm,kurtosis} x layers
    kurt = [results[k] for k in per_layer if "kurtosis" in k]
    # Pearson kurtosis is >= 1 for any distribution once s^4 >> the paper's 1e-6 (the residual
    # stream; the branch outputs at init are ~1e-3 in size, where the 1e-6 floor dominates).
    assert min(results[f"outliers/residual_kurtosis_l{i}"] for i in range(2)) >= 1.0
    np.testing.assert_allclose(results["outliers/avg_kurtosis"], np.mean(kurt), rtol=1e-6)
    assert results["outliers/max_inf_norm"] == max(results[k] for k in per_layer if "inf_norm" in k)

    # The sown residual stream is embedding + every mixer and FFN output so far.
    _, state = model.apply(variables, tokens, mutable=["intermediates"])
    acts = {k: v[0] for k, v in state["intermediates"]["layers"].items()}
    x = model.apply(variables, tokens, method=lambda m, t: m.embed(t))
    for layer in range(2):
        x = x + acts["mixer_out"][layer] + acts["ffn_out"][layer]
        np.testing.assert_allclose(acts["residual"][layer], x, rtol=1e-5, atol=1e-5)
    stats = block_statistics(model, variables, {"inputs": tokens})
    np.testing.assert_allclose(stats["residual"][1][1], outliers.kurtosis(acts["residual"][1]), rtol=1e-6)
