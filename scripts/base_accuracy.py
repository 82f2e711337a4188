"""How often a checkpoint's own greedy traces score on a MATH-layout file, overall and per problem kind: the
measurement behind a study's choice of task, prompt format and token budget (docs/study/smollm2).

    python scripts/base_accuracy.py --format=chat_box --max_tokens=128
    python scripts/base_accuracy.py --format=chat --max_tokens=256

Kinds are the second field of ``unique_id`` (``easy/add/0.json`` -> ``add``), else the ``subject``. Rows are
generated ``--rows_per_call`` at a time (bounded memory); answers are scored by math-verify as the job scores
them (``mrt_jax.rewards.score_math``: a box or an "Answer:" line, time-limited). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

FILES = {"easy-math": "mrt_jax/data/files/easy_math.jsonl"}


def kind_of(row: dict) -> str:
    parts = str(row.get("unique_id", "")).split("/")
    return parts[1] if len(parts) >= 3 else str(row.get("subject", "all"))


def main(argv: list[str] | None = None) -> dict:
    import mrt_jax
    from mrt_jax.assets import smollm2_gguf_path
    from mrt_jax.data import get_format
    from mrt_jax.rewards import score_math

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="", help="a .gguf / HF folder (default: the registry's SmolLM2-135M-Instruct)")
    p.add_argument("--dataset", default="easy-math", help="easy-math or a MATH-layout .jsonl file")
    p.add_argument("--format", default="chat_box", help="chat, chat_box or chat_think")
    p.add_argument("--max_tokens", type=int, default=128)
    p.add_argument("--rows_per_call", type=int, default=40)
    args = p.parse_args(argv)
    with open(FILES.get(args.dataset, args.dataset), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    model, tokenizer = mrt_jax.load_pretrained(args.model or str(smollm2_gguf_path()), dtype="float32")
    fmt = get_format(args.format, tokenizer)
    sampler = mrt_jax.Sampler(model, tokenizer)
    scores, lengths, t0 = collections.defaultdict(list), [], time.time()
    for i in range(0, len(rows), args.rows_per_call):
        chunk = rows[i:i + args.rows_per_call]
        out = sampler.generate([fmt.build_prompt(r["problem"]) for r in chunk], max_new_tokens=args.max_tokens,
                               temperature=0.0)
        for r, text, n in zip(chunk, out.texts, out.lengths):
            ok = score_math(text, str(r["answer"]))
            scores["all"].append(ok)
            scores[kind_of(r)].append(ok)
            lengths.append(int(n))
    result = {"dataset": args.dataset, "format": args.format, "max_tokens": args.max_tokens, "problems": len(rows),
              "accuracy": {k: round(sum(v) / len(v), 3) for k, v in scores.items()},
              "mean_length": round(sum(lengths) / len(lengths), 1),
              "at_cap": sum(n >= args.max_tokens for n in lengths), "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
