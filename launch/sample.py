"""Sample text from a trained checkpoint with the KV-cache generator.

  python launch/sample.py --workdir=runs/default --prompt="def main(" --max_new_tokens=100
"""


from absl import flags

from jaxformers.errors import run_main

flags.DEFINE_string("workdir", "runs/default", "Workdir holding the checkpoint.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = latest).")
flags.DEFINE_string("prompt", "import ", "Text prompt (bytes).")
flags.DEFINE_integer("max_new_tokens", 64, "Tokens to generate.")
flags.DEFINE_float("temperature", 0.8, "0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0 = all).")
flags.DEFINE_integer("num_samples", 1, "Samples to draw.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_list("modality_boundaries", [],
                  "Multi-modality (MoT) models: token ids below the first boundary are modality 0, "
                  "then 1, ... (default: the two_modality data's text/image split).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxformers.config import model_config_from
    from jaxformers.data.text import EOS_ID
    from jaxformers.data.two_modality import TEXT_VOCAB
    from jaxformers.models.registry import build_model
    from jaxformers.models.sampling import ModalityByVocabRange, generate
    from jaxformers.train.checkpoint import load_variables

    config, variables, step = load_variables(FLAGS.workdir, FLAGS.step)
    model = build_model(config.model_family, model_config_from(config.model))
    prompt = np.frombuffer(FLAGS.prompt.encode(), np.uint8).astype(np.int32)
    prompt = jnp.asarray(np.tile(prompt, (FLAGS.num_samples, 1)))
    out = generate(model, variables, prompt, jax.random.PRNGKey(FLAGS.seed),
                   max_new_tokens=FLAGS.max_new_tokens, temperature=FLAGS.temperature,
                   top_k=FLAGS.top_k,
                   modality_of_token=ModalityByVocabRange(
                       tuple(int(b) for b in FLAGS.modality_boundaries) or (TEXT_VOCAB,)))
    print(f"# checkpoint step {step}")
    for row in np.asarray(out):
        data = bytes(int(t) if t < 256 else ord("\n") for t in row if t != EOS_ID)
        print(data.decode("utf-8", errors="replace"))
        print("-" * 40)


if __name__ == "__main__":
    run_main(main)
