"""Claims about the LSA model family, the icl_regression dataset and objective."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.configs_loader import load_file
from jaxformers.data.registry import get_dataset_builder
from jaxformers.models.lsa import effective_preconditioner
from jaxformers.models.registry import build_model
from jaxformers.objectives.registry import get_objective
from jaxformers.ops import icl, lsa

_PATH = pathlib.Path(__file__).parents[2] / "configs" / "icl_lsa.py"
get_config = load_file(str(_PATH)).get_config


def _iterator(config, split="train", batch=8):
    return get_dataset_builder("icl_regression")(
        config.data, split=split, seed=0, batch_size=batch, process_index=0, process_count=1
    )


def test_dataset_batches_and_exact_resume():
    config = get_config("nonisotropic")
    it = _iterator(config)
    first = next(it)
    assert first["inputs"].shape == (8, 21, 6) and first["targets"].shape == (8,)
    assert np.all(first["inputs"][:, -1, -1] == 0.0)  # query label hidden
    state = it.get_state()
    second = next(it)
    other = _iterator(config)
    other.set_state(state)
    np.testing.assert_array_equal(next(other)["inputs"], second["inputs"])
    val = next(_iterator(config, "validation"))
    assert not np.allclose(val["inputs"], first["inputs"])


def test_separate_model_with_gd_weights_is_one_gd_step_and_objective_is_half_mse():
    config = get_config("von_oswald")
    model = build_model("lsa", model_config_from(config.model))
    batch = {k: jnp.asarray(v) for k, v in next(_iterator(config)).items()}
    variables = model.init(jax.random.PRNGKey(0), batch, method=type(model).init_from_batch)
    assert set(variables["params"]) == {f"layer_0_{n}" for n in ("query", "key", "value",
                                                                  "projection")}
    gd = {f"layer_0_{k}": v for k, v in lsa.gd_lsa_params(10, 6.0, 10).items()}
    pred = model.apply({"params": gd}, batch["inputs"])
    x = batch["inputs"][..., :-1]
    y = batch["inputs"][..., -1].at[:, -1].set(batch["targets"])
    np.testing.assert_allclose(pred, icl.gd_predict(x, y, 6.0), rtol=1e-5, atol=1e-6)
    loss, metrics = get_objective("icl_regression")(
        model, {"params": gd}, batch, rng=None, step=0, train=False
    )
    assert float(loss) == pytest.approx(0.5 * float(jnp.mean((pred - batch["targets"]) ** 2)))
    assert float(metrics["mse"]) == pytest.approx(2 * float(loss))


def test_merged_model_preconditioner_readout():
    cfg = model_config_from(get_config("isotropic").model)
    a = np.random.default_rng(0).normal(size=(5, 5))
    params = {"layer_0_kq": jnp.zeros((6, 6)).at[:5, :5].set(a.T),
              "layer_0_pv": jnp.zeros((6, 6)).at[5, 5].set(2.0)}
    np.testing.assert_allclose(effective_preconditioner(params, 5), 2.0 * a, rtol=1e-6)
    t = icl.sample_tasks(jax.random.PRNGKey(3), 16, 5, 20)
    pred = build_model("lsa", cfg).apply({"params": params}, icl.to_tokens(t["x"], t["y"]))
    np.testing.assert_allclose(pred, icl.gd_predict(t["x"], t["y"], 2.0, 1, jnp.asarray(a)),
                               rtol=1e-4, atol=1e-5)


def test_bad_config_and_input():
    with pytest.raises(ConfigError, match="model.lsa.readout"):
        model_config_from(dict(embed_dim=6, num_heads=1, head_dim=2, lsa=dict(readout="x")))
    cfg = model_config_from(get_config("isotropic").model)
    with pytest.raises(ValueError, match="tokens must be"):
        build_model("lsa", cfg).init(jax.random.PRNGKey(0), jnp.zeros((2, 21, 7)))
