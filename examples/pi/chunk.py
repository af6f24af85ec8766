"""Throw darts at the unit square; print how many land in the quarter circle."""

import argparse
import json
import random

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--darts", type=int, default=100000)
args = parser.parse_args()

rng = random.Random(args.seed)
hits = 0
for _ in range(args.darts):
    x, y = rng.random(), rng.random()
    if x * x + y * y <= 1.0:
        hits += 1
print(json.dumps({"seed": args.seed, "darts": args.darts, "hits": hits}))
