"""Peak memory of the compiled multi-token train step: plain backward vs Gloeckle et al.'s
memory-efficient ordering (arXiv 2404.19737, Fig. 2: each head's forward and backward in turn, one
trunk backward), at n = 1, 2, 4 heads and two vocabulary sizes.

  nice -n 19 python benchmarks/mtp_backward_memory.py                  # configs/mtp_lm.py size=small
  nice -n 19 python benchmarks/mtp_backward_memory.py --vocab=264 --ns=4

Memory is XLA's buffer assignment of the compiled train step (`compiled.memory_analysis()`: temp =
activations, logits and scratch; arguments = state + batch), compiled for the default backend, not
run. The byte vocabulary (264) makes one head's logits [B, T, V] about as large as its hidden state,
so the saving shows at a 32k vocabulary, where the logits dominate. Writes
benchmarks/results/mtp_backward_memory.json.
"""

import json
import os

import jax
from absl import app, flags

from jaxformers.configs_loader import load_config
from jaxformers.train.experiment import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("ns", ["1", "2", "4"], "Numbers of heads n.")
flags.DEFINE_list("vocab", ["264", "32768"], "Vocabulary sizes (the byte corpus uses ids < 264).")
flags.DEFINE_string("size", "small", "configs/mtp_lm.py size.")
flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/mtp_backward_memory.json"), "Output JSON.")
FLAGS = flags.FLAGS


def measure(n: int, vocab: int, backward: str) -> dict:
    config = load_config(os.path.join(ROOT, "configs", "mtp_lm.py"), f"size={FLAGS.size},n={n}")
    config.model.vocab_size, config.model.mtp.backward, config.checkpoint_every = vocab, backward, 0
    exp = Experiment(config)
    state = exp.fresh_state()
    batch = exp.global_batch(next(exp.make_iterator("train")))
    compiled, _ = exp.compile_train_step(state, batch)
    mem = compiled.memory_analysis()
    return dict(n=n, vocab=vocab, backward=backward, temp_bytes=int(mem.temp_size_in_bytes),
                argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                logits_bytes_per_head=config.batch_size * config.data.seq_len * vocab * 4)  # fmt: skip


def main(argv):
    del argv
    rows = []
    for vocab in map(int, FLAGS.vocab):
        for n in map(int, FLAGS.ns):
            for backward in ("plain", "one_head_at_a_time"):
                r = measure(n, vocab, backward)
                rows.append(r)
                print(f"vocab={vocab:6d} n={n} {backward:19s} temp={r['temp_bytes'] / 2**20:8.1f} MiB "
                      f"args={r['argument_bytes'] / 2**20:7.1f} MiB  (one head's logits "
                      f"{r['logits_bytes_per_head'] / 2**20:.1f} MiB)", flush=True)  # fmt: skip
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(dict(config=f"configs/mtp_lm.py:size={FLAGS.size}", device=jax.devices()[0].platform,
                       jax=jax.__version__, rows=rows), f, indent=1)  # fmt: skip


if __name__ == "__main__":
    app.run(main)
