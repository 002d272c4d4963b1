"""Evaluate a checkpoint on its validation split, optionally at several settings, and print a table.

  python launch/evaluate.py --workdir=runs/smoe --active_experts=1,2,4,8
  python launch/evaluate.py --workdir=runs/x --override=eval_batches=32 --output=/tmp/x.json

Restores the checkpoint's own config and variables (`jaxformers/train/evaluate.py`), so it works
for any model. Each row rebuilds the experiment with config overrides applied (the
parameters do not change): `--active_experts=k1,k2,...` gives one row per k with
`model.moe.k=k, model.moe.k_schedule=fixed` (SMoE's "self-slimmable" evaluation; a model without
an MoE FFN is evaluated once and the row repeated). `--override=key=value` (repeatable, dotted
keys, JSON values) applies to every row.
"""

import math

from absl import app, flags, logging

from jaxformers.errors import run_main

flags.DEFINE_string("workdir", None, "Workdir holding the checkpoint.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1: the latest).")
flags.DEFINE_list("active_experts", [], "MoE k values to evaluate at (one row each).")
flags.DEFINE_multi_string("override", [], "key=value config override for every row (JSON value).")
flags.DEFINE_integer("eval_batches", 0, "Validation batches (0: the config's eval_batches).")
flags.DEFINE_string("output", "", "Also write the rows as JSON here.")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    import json

    from jaxformers.train import checkpoint as ckpt
    from jaxformers.train.evaluate import evaluate_checkpoint, moe_rows, parse_overrides

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
    fl = flags.FLAGS
    common = parse_overrides(fl.override)
    ks = fl.active_experts or [None]
    rows = [common]
    if fl.active_experts:
        config, _, _ = ckpt.load_variables(fl.workdir, fl.step)
        rows = [common | r for r in moe_rows(config.model, ks)]
    results = evaluate_checkpoint(fl.workdir, rows, step=fl.step, eval_batches=fl.eval_batches)
    print(f"{fl.workdir} (step {results[0]['step']})")
    print(f"{'k':>4} {'loss':>8} {'bits/token':>10} {'accuracy':>9}")
    for k, r in zip(ks, results):
        print(f"{k if k is not None else '-':>4} {r['loss']:8.4f} {r['loss'] / math.log(2):10.4f} "
              f"{r.get('accuracy', float('nan')):9.4f}")
        rest = {m: v for m, v in r.items() if m not in ("setting", "step", "loss", "accuracy")}
        if rest:  # evaluator metrics (nav_exact_match, ...) and objective diagnostics
            print("     " + " ".join(f"{m}={v:.4g}" for m, v in sorted(rest.items())))
    if fl.output:
        with open(fl.output, "w") as f:
            json.dump([dict(r, k=k) for k, r in zip(ks, results)], f, indent=1)


if __name__ == "__main__":
    run_main(main)
