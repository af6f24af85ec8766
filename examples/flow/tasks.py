"""cloudmesh's example: four tasks, each printing a number.

    shoal flow "(a | b | c); d; a + b + c + d" --defs examples/flow/tasks.py

a, b and c run at once, then d, then the boss adds the four results: 10.
"""


def a():
    return "echo 1"


def b():
    return "echo 2"


def c():
    return "echo 3"


def d():
    # A dict gives any task field.
    return {"run": "echo 4", "retries": 1}
