"""Train-step throughput on one GPU: the r1-distill-qwen-1.5b shape, bf16, sequence 2048.

    python -m benchmarks.train_step_gpu              # on the GPU machine
    python -m benchmarks.train_step_gpu --smoke      # tiny model on CPU: checks the script works

Reports tokens/s and MFU by 6N (N = parameters incl. embeddings; peak 989 TFLOP/s dense bf16 for an H200) of the
jitted JAX train step (remat on, the same clipped-surrogate loss as training), and, when torch + transformers are
present, of a transformers + torch eager step (bf16, gradient checkpointing, sdpa attention, AdamW, the same
loss) in the same run. Each framework runs in its own subprocess so neither holds the other's GPU memory.
Reference: 31.4k tok/s measured for transformers on an H200; target >= 1.3x that. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

H200_PEAK_BF16 = 989.4e12
REFERENCE_TORCH_TOK_S = 31.4e3


def _model_cfg(smoke: bool, param_dtype: str = "bfloat16"):
    from mrt_jax.models import get_preset

    name = "tiny" if smoke else "r1-distill-qwen-1.5b"
    return get_preset(name, param_dtype=param_dtype, dtype="bfloat16", remat=True)


def run_jax(args) -> dict:
    import jax

    from benchmarks.train_step_cpu import random_batch, time_steps
    from mrt_jax.learner import LearnerConfig, create_train_state, make_train_step

    mc = _model_cfg(args.smoke, args.param_dtype)
    lc = LearnerConfig(lr=1e-6, micro_batches=args.micro, total_steps=1000)
    if args.fused_attention:
        # Experiment: swap the decoder's einsum attention for jax.nn.dot_product_attention (cuDNN flash on GPU).
        # Valid here only because the benchmark rows have no padding (causal mask only).
        import mrt_jax.models.decoder as decoder

        decoder.attention = lambda q, k, v, mask_bts: jax.nn.dot_product_attention(q, k, v, is_causal=True)
    t0 = time.perf_counter()
    state = create_train_state(mc, lc)
    batch = random_batch(state, mc, args.rows, args.seq, prompt=min(256, args.seq // 4))
    init_s = time.perf_counter() - t0
    first, per_step, _ = time_steps(make_train_step(lc, mc), state, batch, args.steps)
    mem = {}
    try:
        stats = jax.devices()[0].memory_stats() or {}
        mem = {"peak_gib": round(stats.get("peak_bytes_in_use", 0) / 2**30, 2)}
    except Exception:  # CPU has no memory stats
        pass
    return dict(framework="jax", device=str(jax.devices()[0].device_kind), jax=jax.__version__,
                init_s=round(init_s, 1), compile_s=round(first, 1), step_s=round(per_step, 4),
                tokens_per_s=round(args.rows * args.seq / per_step, 1), params=mc.num_params, **mem)


def run_torch(args) -> dict:
    import torch
    import transformers

    mc = _model_cfg(args.smoke)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke is False and dev != "cuda":
        return dict(framework="torch", skipped="torch has no CUDA device")
    common = dict(vocab_size=mc.vocab_size, hidden_size=mc.hidden_size, intermediate_size=mc.intermediate_size,
                  num_hidden_layers=mc.num_layers, num_attention_heads=mc.num_heads,
                  num_key_value_heads=mc.num_kv_heads, rope_theta=mc.rope_theta, rms_norm_eps=mc.rms_norm_eps,
                  max_position_embeddings=mc.max_position_embeddings, tie_word_embeddings=mc.tie_word_embeddings)
    if mc.architecture == "qwen2":
        hf_cfg, cls = transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM
    else:
        hf_cfg, cls = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    hf_cfg.use_cache = False
    with torch.device(dev):
        model = cls._from_config(hf_cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model.gradient_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    g = torch.Generator(device=dev).manual_seed(0)
    tokens = torch.randint(0, mc.vocab_size, (args.rows, args.seq), device=dev, generator=g)
    mask = (torch.arange(args.seq, device=dev) >= min(256, args.seq // 4)).float().expand(args.rows, -1)[:, 1:]
    adv = torch.randn(args.rows, 1, device=dev, generator=g) * mask
    per = args.rows // args.micro

    def step():
        opt.zero_grad(set_to_none=True)
        for i in range(args.micro):
            sl = slice(i * per, (i + 1) * per)
            logits = model(input_ids=tokens[sl]).logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, tokens[sl, 1:, None])[..., 0]
            ratio = torch.exp(logp - logp.detach())
            pg = -torch.minimum(ratio * adv[sl], ratio.clamp(0.8, 1.2) * adv[sl])
            loss = (pg * mask[sl]).sum() / mask.sum()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    per_step = (time.perf_counter() - t0) / args.steps
    out = dict(framework="torch", device=dev, torch=torch.__version__, transformers=transformers.__version__,
               first_step_s=round(first, 1), step_s=round(per_step, 4),
               tokens_per_s=round(args.rows * args.seq / per_step, 1))
    if dev == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _child(kind: str, argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.train_step_gpu", "--worker", kind] + argv
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(framework=kind, error=f"timed out after {timeout:.0f} s")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return dict(framework=kind, error=f"exit {p.returncode}: {p.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model, short sequence, on CPU")
    ap.add_argument("--rows", type=int, default=8, help="sequences per step")
    ap.add_argument("--micro", type=int, default=2, help="micro-batches per step (gradient accumulation)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--param-dtype", default="bfloat16", choices=("bfloat16", "float32"),
                    help="JAX parameter/optimizer dtype (compute is bf16 either way); torch runs pure bf16")
    ap.add_argument("--timeout", type=float, default=420.0, help="seconds per framework")
    ap.add_argument("--fused-attention", action="store_true",
                    help="experiment: JAX step with jax.nn.dot_product_attention (cuDNN) instead of einsum attention")
    ap.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.seq, args.rows, args.micro, args.steps = min(args.seq, 32), 4, 2, 1
        os.environ["JAX_PLATFORMS"] = "cpu"
    if args.worker:
        res = run_jax(args) if args.worker == "jax" else run_torch(args)
        print(json.dumps(res), flush=True)
        return res
    passthru = [f"--rows={args.rows}", f"--micro={args.micro}", f"--seq={args.seq}", f"--steps={args.steps}"]
    passthru += [f"--param-dtype={args.param_dtype}"] + (["--fused-attention"] if args.fused_attention else [])
    passthru += ["--smoke"] if args.smoke else []
    results = [_child("jax", passthru, args.timeout)]
    print(json.dumps(results[-1]), flush=True)
    if not args.no_torch:
        results.append(_child("torch", passthru, args.timeout))
        print(json.dumps(results[-1]), flush=True)
    n_params = _model_cfg(args.smoke).num_params
    print(f"\n{'framework':>10} {'tokens/s':>10} {'MFU(6N)':>8} {'step s':>8}  note")
    for r in results:
        tps = r.get("tokens_per_s")
        if tps:
            r["mfu_6n"] = round(tps * 6 * n_params / H200_PEAK_BF16, 4)
            peak = r.get("peak_gib", "-")
            print(f"{r['framework']:>10} {tps:>10} {r['mfu_6n']:>8} {r['step_s']:>8}  peak {peak} GiB")
        else:
            why = (r.get("error") or r.get("skipped") or "").strip().splitlines()
            print(f"{r['framework']:>10} {'-':>10} {'-':>8} {'-':>8}  {why[-1][:200] if why else ''}")
    jax_tps = results[0].get("tokens_per_s")
    out = {"benchmark": "train_step_gpu", "smoke": args.smoke, "fused_attention": args.fused_attention,
           "rows": args.rows, "micro_batches": args.micro, "seq": args.seq, "params": n_params, "results": results,
           "vs_reference_31.4k": round(jax_tps / REFERENCE_TORCH_TOK_S, 3) if jax_tps else None}
    torch_tps = results[-1].get("tokens_per_s") if len(results) > 1 else None
    if jax_tps and torch_tps:
        out["jax_over_torch_same_run"] = round(jax_tps / torch_tps, 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
