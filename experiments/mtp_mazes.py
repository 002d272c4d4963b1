"""Next token, multi-token prediction and MLM-U on 5x5 DFS mazes with few training mazes: held-out
greedy exact match at equal steps (issue: one table for three objectives; Gloeckle et al. 2024,
arXiv 2404.19737; DeepSeek-V3, arXiv 2412.19437, §2.2; Nolte et al. 2024, arXiv 2412.05117),
then self-speculative decoding of the held-out paths with the trained parallel-head models.

  nice -n 19 python experiments/mtp_mazes.py --grid=1000:0 --steps=120 --root=/tmp/mtp_mazes
  nice -n 19 python experiments/mtp_mazes.py --grid=5000:0,1000:1 --decode=false ...
  python experiments/mtp_mazes.py --table_only --root=/tmp/mtp_mazes
      # -> experiments/results/mtp_mazes.json, the table in docs/multi_token_prediction.md

Objectives (all configs/maze_*.py presets grid=5,size=...; the decoder models have 2 x
layers_per_stack blocks on head 1's path, the encoder-decoder layers_per_stack per stack):
ntp = configs/maze_ntp.py, mtp2 / mtp4 = configs/mtp_maze.py n=2 / n=4 (parallel heads),
seq2 = configs/mtp_maze.py n=3,kind=sequential (DeepSeek-V3 depth D = 2), mlmu =
configs/maze_mlmu.py. Each --grid item N:seed trains every objective on the first N training
mazes with config.seed = seed, in --root/n{N}_s{seed}_{objective} (reused if finished); each run
writes result.json there, so several processes can run disjoint grid items; --table_only gathers
them with the runs of the same length already in experiments/results/mtp_mazes.json (each run is
recorded there when it finishes; a --size other than tiny is recorded as ..._{size} and tabled
only with `--table_only --size=<size>`). maze_navigation is evaluated every --eval_every steps and at the
end (--eval_mazes held-out mazes). Decoding (mtp2, mtp4): the maze+prompt prefix of --num_prompts
held-out mazes after the evaluated ones, --new_tokens greedy tokens (prefix + new + n - 1 <= max_len
112), batch 1.
"""

import json
import os
import time

import _results
import _speculative
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "mtp_mazes"
DOCS = os.path.join(ROOT, "docs", "multi_token_prediction.md")
BEGIN, END = "<!-- mtp_mazes table: begin -->", "<!-- mtp_mazes table: end -->"
OBJECTIVES = {
    "ntp": ("maze_ntp", "", "next token"),
    "mtp2": ("mtp_maze", "n=2", "MTP, 2 parallel heads"),
    "mtp4": ("mtp_maze", "n=4", "MTP, 4 parallel heads"),
    "seq2": ("mtp_maze", "n=3,kind=sequential", "MTP, sequential depth 2"),
    "mlmu": ("maze_mlmu", "", "MLM-U"),
}

flags.DEFINE_list("grid", ["1000:0"], "num_train:seed items.")
flags.DEFINE_list("objectives", list(OBJECTIVES), "Objectives to train (keys of OBJECTIVES).")
flags.DEFINE_integer("steps", 120, "Training steps (equal for every objective).")
flags.DEFINE_string("size", "tiny", "configs/maze_mlmu.py size preset.")
flags.DEFINE_float("learning_rate", 3e-3, "Peak learning rate (the tiny preset's measured runs).")
flags.DEFINE_integer("eval_every", 60, "Steps between navigation evaluations.")
flags.DEFINE_integer("eval_mazes", 256, "Held-out mazes decoded per evaluation.")
flags.DEFINE_string("root", "/tmp/mtp_mazes", "Workdirs go in root/n{N}_s{seed}_{objective}.")
flags.DEFINE_bool("decode", True, "Measure speculative decoding on the mtp2/mtp4 runs.")
flags.DEFINE_integer("num_prompts", 8, "Held-out mazes to decode.")
flags.DEFINE_integer("new_tokens", 28, "Tokens to decode after the prefix.")
flags.DEFINE_integer("reps", 3, "Timed decoding repetitions per decoder (interleaved).")
flags.DEFINE_bool("table_only", False, "Only gather result.json files into the JSON and docs.")
FLAGS = flags.FLAGS


def get_config(objective: str):
    name, arg, _ = OBJECTIVES[objective]
    preset = f"grid=5,size={FLAGS.size},steps={FLAGS.steps}"
    return _results.config(name, ",".join(filter(None, [preset, arg])))


def decode(workdir: str) -> dict:
    from jaxformers.config import model_config_from
    from jaxformers.data import mazes
    from jaxformers.models.registry import build_model
    from jaxformers.train.checkpoint import load_variables

    config, variables, _ = load_variables(workdir)
    model = build_model(config.model_family, model_config_from(config.model))
    o = mazes.data_options(config.data)
    held_out = mazes.maze_splits(o["n"], o["num_train"], o["num_validation"], o["seed"])["validation"]
    first = config.data.eval_mazes  # after the evaluator's mazes
    prompts = [t[: mazes.prefix_len(o["n"])] for t in held_out[first : first + FLAGS.num_prompts]]
    result = _speculative.compare_decoders(model, variables, prompts, new_tokens=FLAGS.new_tokens,
                                           reps=FLAGS.reps)  # fmt: skip
    for row in result["per_prompt"]:
        del row["prompt"]  # the maze prefix (81 tokens), the same for every objective
    return result


def variant_name(run_name: str) -> str:
    """The JSON key of a run: its workdir name, with the size for presets other than tiny."""
    return run_name if FLAGS.size == "tiny" else f"{run_name}_{FLAGS.size}"


def run(num_train: int, seed: int, objective: str) -> dict | None:
    """The run's result (trained now or read back), or None if it was stopped before its last step."""
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.checkpoint import latest_step
    from jaxformers.train.metrics import read_metrics

    workdir = os.path.join(FLAGS.root, f"n{num_train}_s{seed}_{objective}")
    out = os.path.join(workdir, "result.json")
    if os.path.exists(out):
        with open(out) as f:
            return json.load(f)
    config = get_config(objective)
    config.data.num_train = num_train
    config.data.eval_mazes = FLAGS.eval_mazes
    config.seed = seed
    config.learning_rate = FLAGS.learning_rate
    config.eval_every = FLAGS.eval_every
    config.checkpoint_every = FLAGS.eval_every or FLAGS.steps  # a killed run resumes from here
    config.keep_checkpoints = 1
    config.progress_bar = False
    start = time.perf_counter()
    train_and_evaluate(config, workdir)
    wall = time.perf_counter() - start
    if latest_step(workdir) != FLAGS.steps:  # stopped (SIGTERM): no result, so a rerun resumes it
        print(f"{workdir}: stopped at step {latest_step(workdir)} of {FLAGS.steps}; rerun to resume")
        return None
    valid = [r for r in read_metrics(workdir, "validation") if "nav_exact_match" in r]
    last = valid[-1]
    result = {
        "num_train": num_train, "seed": seed, "objective": objective, "steps": FLAGS.steps,
        "size": FLAGS.size, "learning_rate": FLAGS.learning_rate, "batch_size": config.batch_size,
        "epochs": FLAGS.steps * config.batch_size / num_train, "train_wall_s": wall,
        "exact_match": last["nav_exact_match"], "token_accuracy": last["nav_token_accuracy"],
        "best_exact_match": max(r["nav_exact_match"] for r in valid),
        "validation_loss": last["loss"],
        "validation_loss_head1": last.get("loss_head1", last["loss"] if objective == "ntp" else None),
        "curve": [(r["step"], r["nav_exact_match"], r["nav_token_accuracy"]) for r in valid],
        "decoding": decode(workdir) if FLAGS.decode and objective in ("mtp2", "mtp4") else None,
    }  # fmt: skip
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    _results.save_variant(NAME, variant_name(os.path.basename(workdir)), result)  # kept if root is lost
    return result


def table(results: dict) -> str:
    cells = {}
    for r in results.values():
        cells.setdefault((r["objective"], r["num_train"]), []).append(r)
    sizes = sorted({n for _, n in cells})
    lines = ["| objective | " + " | ".join(f"{n} mazes: exact match (token acc.)" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]  # fmt: skip
    for key, (_, _, label) in OBJECTIVES.items():
        row = []
        for n in sizes:
            runs = sorted(cells.get((key, n), []), key=lambda r: r["seed"])
            row.append(", ".join(f"{r['exact_match']:.3f} ({r['token_accuracy']:.2f})" for r in runs) or "-")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    decoded = {name: r["decoding"] for name, r in sorted(results.items()) if r.get("decoding")}
    if decoded:
        lines += ["", "| run | decoding: identical | acceptance | tokens / pass | speed-up |",
                  "|---|---|---|---|---|"]  # fmt: skip
    for name, d in decoded.items():
        lines.append(f"| {name} | {d['identical_to_greedy']} ({d['prompts']} mazes) | "
                     f"{d['acceptance_rate']:.3f} | {d['tokens_per_pass']:.2f} | "
                     f"{d['speed_up']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def write_docs(text: str):
    with open(DOCS) as f:
        page = f.read()
    if BEGIN not in page:
        raise ValueError(f"{DOCS} has no {BEGIN!r} marker for the table")
    head, rest = page.split(BEGIN)
    with open(DOCS, "w") as f:
        f.write(head + BEGIN + "\n" + text + "\n" + END + rest.split(END)[1])


def main(argv):
    del argv
    if not FLAGS.table_only:
        for item in FLAGS.grid:
            num_train, seed = map(int, item.split(":"))
            for objective in FLAGS.objectives:
                r = run(num_train, seed, objective)
                if r is None:  # stopped: what is left is rerun later
                    return
                print(f"{num_train} mazes seed {seed} {objective}: exact match {r['exact_match']:.3f} "
                      f"token acc {r['token_accuracy']:.3f} ({r['train_wall_s']:.0f} s)",
                      flush=True)  # fmt: skip
        return
    # the recorded runs of this length, then root's (newer) ones
    results = {k: r for k, r in _results.load(NAME).items()
               if r["steps"] == FLAGS.steps and r.get("size", "tiny") == FLAGS.size}  # fmt: skip
    for name in sorted(os.listdir(FLAGS.root)) if os.path.isdir(FLAGS.root) else []:
        path = os.path.join(FLAGS.root, name, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                result = json.load(f)
            if result.get("size", "tiny") == FLAGS.size:
                results[variant_name(name)] = result
                _results.save_variant(NAME, variant_name(name), result)  # finished before recorded
    text = table(dict(sorted(results.items())))
    print(text)
    write_docs(text)


if __name__ == "__main__":
    app.run(main)
