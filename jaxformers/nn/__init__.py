"""Flax Linen layers. Importing this package registers every token mixer, FFN and projection."""

from jaxformers.nn import attention, linear, mlp  # noqa: F401  (registration side effects)
from jaxformers.nn import linear_attention  # noqa: F401  (GLA + causal linear attention mixers)
from jaxformers.nn import pattention  # noqa: F401  (TokenFormer projection + FFN)
