"""XLA:CPU flags jaxformers needs, set in XLA_FLAGS when the package is imported (XLA reads them
when the backend starts, at the first computation, so importing jaxformers first is enough).

jaxlib 0.10.x hands some fusions on CPU to YNNPACK. On an AMD EPYC host (2026-12-01) the backward
pass of a GLA model segfaults inside one of them (slinky::fuse_contiguous_dims in a YNN transpose,
called from xla::cpu::YnnFusionThunk): `launch/train.py --config=configs/gla_lm.py` dies at its
first step. `--xla_cpu_experimental_ynn_fusion_type=` (an empty list) keeps those fusions on the
plain XLA:CPU path, which is how every earlier jaxlib ran them. The flag is only added where the
installed jaxlib is known to have it: XLA aborts at startup on a flag it does not know. A value the
user sets in XLA_FLAGS is kept.
"""

import os

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_JAXLIB_WITH_YNN_FLAG = ("0.10.",)


def apply_cpu_workarounds(environ=os.environ) -> None:
    try:
        from jaxlib.version import __version__ as jaxlib_version
    except ImportError:  # jax not installed yet: nothing to configure
        return
    flags = environ.get("XLA_FLAGS", "")
    if jaxlib_version.startswith(_JAXLIB_WITH_YNN_FLAG) and YNN_FUSION_FLAG not in flags:
        environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_FLAG}=".strip()
