"""Model families by name (`config.model_family`): each builds a Linen module from ModelConfig."""

from jaxformers.models.decoder import Decoder
from jaxformers.models.encdec import EncoderDecoder
from jaxformers.models.icl_classifier import ICLClassifier
from jaxformers.models.icl_transformer import ICLTransformer
from jaxformers.models.lsa import LSA
from jaxformers.models.mtp import MTPDecoder
from jaxformers.registry import lookup

MODELS = {
    "decoder": Decoder,  # token mixers x feed-forwards x projections x modalities (decoder.py)
    "encdec": EncoderDecoder,  # the MLM-U encoder-decoder (Nolte et al. 2024)
    "lsa": LSA,  # linear self-attention for in-context regression
    "icl_transformer": ICLTransformer,  # x_i, y_i tokens through the decoder blocks (Garg et al. 2022)
    "icl_classifier": ICLClassifier,  # (exemplar, label) tokens, logits at the query (Chan et al. 2022)
    "mtp": MTPDecoder,  # decoder + n parallel future-token heads (Gloeckle et al. 2024)
}


def build_model(family: str, cfg):
    return lookup(MODELS, family, "config.model_family")(cfg)
