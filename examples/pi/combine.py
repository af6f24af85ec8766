"""Combine the chunks' counts into an estimate of pi (the run's result)."""

import json
import math
import os
import sys

darts = hits = 0
for path in sys.argv[1:]:
    with open(path) as f:
        chunk = json.load(f)
    darts += chunk["darts"]
    hits += chunk["hits"]
estimate = 4.0 * hits / darts
result = {
    "pi": round(estimate, 6),
    "error": round(abs(estimate - math.pi), 6),
    "darts": darts,
    "chunks": len(sys.argv) - 1,
}
with open(os.environ["SHOAL_RESULT"], "w") as f:
    json.dump(result, f)
print(f"pi ~ {estimate:.6f} from {darts} darts in {len(sys.argv) - 1} chunks")
