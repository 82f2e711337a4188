"""Decode throughput on a GPU: mrt_jax's Sampler against ``transformers.generate``, and against the roofline.

R1-Distill-Qwen-1.5B shape with random weights, bf16, greedy, EOS ignored, prompt 128 + 512 new tokens, batch 64
and 256. transformers runs ``Qwen2ForCausalLM`` built from the same config (its own random weights: only speed is
compared). Roofline: a decode step must read every weight once plus the valid part of the KV cache, so
``tok/s <= batch / (bytes_per_step / bandwidth)``, averaged over the steps (H200: ~4.3 TB/s measured).

    python -m benchmarks.sampler_gpu                  # on the GPU machine
    python -m benchmarks.sampler_gpu --quick          # batch 64 and 256, 128 new tokens, 1 timed run
    python -m benchmarks.sampler_gpu --quick --cpu_smoke   # tiny qwen2 shape on CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def roofline_tok_s(cfg, batch: int, prompt: int, new: int, bandwidth: float, bytes_per: int = 2) -> float:
    """batch / mean step time, step time = (weight bytes + valid KV bytes read) / bandwidth."""
    weights = cfg.num_params * bytes_per
    kv_per_slot = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * bytes_per  # k and v, all layers
    mean_len = prompt + (new - 1) / 2
    step_bytes = weights + batch * mean_len * kv_per_slot
    return batch / (step_bytes / bandwidth)


def _median_time(fn, reps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), first


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cpu_smoke", action="store_true", help="tiny qwen2 shape on CPU (correctness of the script)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 64,256)")
    ap.add_argument("--prompt", type=int, default=None)
    ap.add_argument("--new", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--bandwidth", type=float, default=4.3e12, help="bytes/s for the roofline (H200 ~4.3e12)")
    ap.add_argument("--no_hf", action="store_true", help="skip transformers")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np

    from mrt_jax.models import create_model, get_preset
    from mrt_jax.sampling import Sampler

    if args.cpu_smoke:
        cfg = get_preset("r1-distill-qwen-1.5b").replace(vocab_size=1024, hidden_size=128, intermediate_size=256,
                                                          num_layers=2, num_heads=4, num_kv_heads=2)
        batches, prompt, new = [2, 4], 16, 8
    else:
        cfg = get_preset("r1-distill-qwen-1.5b")
        batches, prompt, new = [64, 256], 128, (128 if args.quick else 512)
    cfg = cfg.replace(dtype="bfloat16", param_dtype="bfloat16")
    batches = [int(b) for b in args.batches.split(",")] if args.batches else batches
    prompt, new = args.prompt or prompt, args.new or new
    reps = args.reps or (1 if args.quick or args.cpu_smoke else 3)

    model = create_model(cfg, seed=0)
    sampler = Sampler(model, None, eos_ids=[], pad_id=0, max_cache_len=prompt + new)
    rng = np.random.default_rng(0)
    hf = None
    if not args.no_hf:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        dev = "cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
        hcfg = Qwen2Config(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                           intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                           num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                           max_position_embeddings=prompt + new, rms_norm_eps=cfg.rms_norm_eps,
                           rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_word_embeddings)
        hf = Qwen2ForCausalLM(hcfg).to(device=dev, dtype=torch.bfloat16).eval()
        hf.generation_config.eos_token_id = None

    rows = []
    for B in batches:
        prompts = rng.integers(3, cfg.vocab_size, (B, prompt)).tolist()

        def ours(prompts=prompts):
            out = sampler.generate(prompts, max_new_tokens=new, temperature=0, ignore_eos=True)
            assert int(out.lengths.min()) == new
            return out

        t_ours, first_ours = _median_time(ours, reps)
        row = {"batch": B, "ours_tok_s": B * new / t_ours, "ours_first_call_s": first_ours,
               "roofline_tok_s": roofline_tok_s(cfg, B, prompt, new, args.bandwidth)}
        row["ours_roofline_frac"] = row["ours_tok_s"] / row["roofline_tok_s"]
        if hf is not None:
            import torch

            ids = torch.tensor(prompts, device=hf.device)

            def theirs(ids=ids):
                with torch.no_grad():
                    out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                      do_sample=False, pad_token_id=0)
                if hf.device.type == "cuda":
                    torch.cuda.synchronize()
                return out

            t_hf, _ = _median_time(theirs, reps)
            row["hf_tok_s"] = B * new / t_hf
            row["speedup"] = row["ours_tok_s"] / row["hf_tok_s"]
        rows.append(row)

    print(f"device: {jax.devices()[0].device_kind}; {cfg.num_params / 1e9:.2f}B params bf16; prompt {prompt}, "
          f"new {new}")
    print(f"{'batch':>6}{'ours tok/s':>12}{'hf tok/s':>10}{'speedup':>9}{'roofline':>10}{'frac':>7}")
    for r in rows:
        print(f"{r['batch']:>6}{r['ours_tok_s']:>12.0f}{r.get('hf_tok_s', float('nan')):>10.0f}"
              f"{r.get('speedup', float('nan')):>9.2f}{r['roofline_tok_s']:>10.0f}{r['ours_roofline_frac']:>7.1%}")
    res = {"benchmark": "sampler_gpu", "device": jax.devices()[0].device_kind, "prompt": prompt, "new": new,
           "reps": reps, "cpu_smoke": args.cpu_smoke, "rows": rows}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
