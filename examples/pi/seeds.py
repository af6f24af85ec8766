"""Print N distinct seeds, one a line."""

import random
import sys

count = int(sys.argv[1])
rng = random.Random(20261121)
for seed in rng.sample(range(1, 10**9), count):
    print(seed)
