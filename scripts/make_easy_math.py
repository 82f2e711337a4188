"""Write mrt_jax/data/files/easy_math.jsonl: grade-school problems in the MATH-500 layout (problem, solution, answer,
subject, level, unique_id), generated from templates with a seeded RNG, golds computed here. Deterministic:
re-running it reproduces the shipped file byte for byte.

    python scripts/make_easy_math.py
"""

from __future__ import annotations

import json
import os
import random

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mrt_jax", "data", "files",
                   "easy_math.jsonl")
NAMES = ("Ava", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
THINGS = ("apples", "pencils", "stickers", "marbles", "books", "coins")


def _problem(kind: str, rng: random.Random) -> tuple[str, int, str]:
    """(problem, answer, the one-line working) of one template."""
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    if kind == "add":
        return f"What is ${a} + {b}$?", a + b, f"${a} + {b} = {a + b}$"
    if kind == "sub":
        a, b = max(a, b) + 1, min(a, b)
        return f"What is ${a} - {b}$?", a - b, f"${a} - {b} = {a - b}$"
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is ${a} \\times {b}$?", a * b, f"${a} \\times {b} = {a * b}$"
    if kind == "more":
        return (f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?", a + b,
                f"${a} + {b} = {a + b}$")
    if kind == "left":
        a, b = max(a, b) + 1, min(a, b)
        return (f"{name} had {a} {thing} and gave away {b}. How many {thing} are left?", a - b,
                f"${a} - {b} = {a - b}$")
    a, b = rng.randint(2, 9), rng.randint(2, 9)  # "groups"
    return (f"There are {a} bags with {b} {thing} in each bag. How many {thing} are there in all?", a * b,
            f"${a} \\times {b} = {a * b}$")


def rows(n: int = 160, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    kinds = ("add", "sub", "mul", "more", "left", "groups")
    out, seen = [], set()
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        problem, answer, work = _problem(kind, rng)
        if problem in seen:
            continue
        seen.add(problem)
        out.append({"problem": problem, "solution": f"{work}, so the answer is $\\boxed{{{answer}}}$.",
                    "answer": str(answer), "subject": "Prealgebra", "level": 1 if kind in kinds[:3] else 2,
                    "unique_id": f"easy/{kind}/{len(out)}.json"})
    return out


if __name__ == "__main__":
    with open(OUT, "w") as f:
        for r in rows():
            f.write(json.dumps(r) + "\n")
    print(f"wrote {OUT}")
