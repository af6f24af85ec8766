"""The Python API: a matrix of tasks and a reduction, run on this machine.

python examples/api.py
"""

import shoal

run = shoal.Run("squares")
squares = run.task("square-{n}", "echo $(( {n} * {n} ))", matrix={"n": range(1, 11)})
run.reduce("total", squares)  # the boss adds the results as they arrive
words = run.task("word-{w}", """echo '["{w}"]'""", matrix={"w": ["shoal", "runs", "tasks"]})
run.reduce("sentence", words)  # lists concatenate
result = run.execute(workers=2)

print(result.state, result.results["total"], " ".join(result.results["sentence"]))
assert result.ok and result.results["total"] == 385
