"""Maze generation throughput: DFS mazes per second (generate + solve + tokenise), one process.

  python benchmarks/maze_generation.py [--num=8192] [--sizes=5,10]

Prints a table and writes benchmarks/results/maze_generation.json. Timings on a shared CPU are
noisy; the best of 3 repeats is reported.
"""

import json
import os
import platform
import time

from absl import app, flags

from jaxformers.data import mazes

flags.DEFINE_integer("num", 8192, "Mazes per size.")
flags.DEFINE_string("sizes", "5,10", "Comma-separated grid sizes n.")


def main(argv):
    del argv
    args = flags.FLAGS
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        best = float("inf")
        for repeat in range(3):
            t = time.perf_counter()
            tokens = mazes.generate_mazes(args.num, n, seed=repeat)
            best = min(best, time.perf_counter() - t)
        lengths = mazes.path_mask(tokens, n).sum(1) - 1
        rows.append(dict(grid_n=n, mazes=args.num, seconds=best, mazes_per_s=args.num / best,
                         seq_len=int(tokens.shape[1]), path_mean=float(lengths.mean()),
                         path_max=int(lengths.max())))
    print(f"{'grid':>5} {'mazes/s':>10} {'mazes/min':>10} {'seq_len':>8} {'path mean/max':>14}")
    for r in rows:
        print(f"{r['grid_n']:>5} {r['mazes_per_s']:>10.0f} {60 * r['mazes_per_s']:>10.0f} "
              f"{r['seq_len']:>8} {r['path_mean']:>9.1f}/{r['path_max']}")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "maze_generation.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(dict(machine=platform.machine(), cpus=os.cpu_count(), results=rows), f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    app.run(main)
