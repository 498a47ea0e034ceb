"""Decoding at the verify-cost limit (issue #17 point 4): how close one decoding step gets to
the time it takes to read the model's weights once, with the target's KV cache dynamic
(eager), static (eager) and static with every step replayed as a CUDA graph.

Per mode: plain greedy ms per step (the decode loop's own time, prefill excluded) next to
the weight-read time (parameter bytes / memory bandwidth, nominal and measured), and
speculative decoding's tokens/s, ms per verify and tokens per forward. Every output is
checked token by token against plain greedy with the dynamic cache.

    python scripts/bench_decode_modes.py --model .cache/reader-lm/reader-110m --device cuda \\
        --dtype bf16 --json-out /tmp/decode-modes.json
    python scripts/bench_decode_modes.py --random-llama 1b --device cuda --dtype bf16 --plain-only
    python scripts/bench_decode_modes.py --tiny gpt2        # CPU rehearsal, seconds

Random weights (``--tiny``, ``--random-llama``) time steps only: they tie in bf16 and draft
acceptance means nothing for them, so their identity check is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "src" / "specrag" / "demo" / "scifact-1k.jsonl"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from specrag.generation.decode import DecodeConfig, generate  # noqa: E402
from specrag.generation.drafters import ContextDrafter  # noqa: E402

MODES = {
    "dynamic": {"cache": "dynamic"},
    "static": {"cache": "static"},
    "static+graphs": {"cache": "static", "cuda_graphs": True},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Nominal HBM bandwidth (bytes/s) by device name; the measured copy bandwidth is reported too.
NOMINAL_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100", 2.0e12),
    ("L4", 0.3e12),
]
#: TinyLlama-1.1B's shape (GPU-NOTES.md: its step took 13-14 ms on an H200).
LLAMA_1B = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=2048,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large on-device copy (read + write), best of a few."""
    n = (512 if device.type == "cuda" else 64) * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n * 4 / best


def nominal_bandwidth(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((bw for key, bw in NOMINAL_BANDWIDTH if key in name), None)


def load_model(args, device: torch.device, dtype: torch.dtype):
    """(model, tokenizer path or None, description, trained?)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
        tok = args.model if (Path(args.model) / "tokenizer.json").exists() else None
        tok = tok or str(Path(args.model).parent / "tokenizer")
        return model, tok, args.model, True
    if args.random_llama:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(**LLAMA_1B)).to(dtype).eval()
        model.config._attn_implementation = "sdpa"
        return model, None, "random TinyLlama-1.1B shape", False
    from specrag.generation.testing import tiny_model

    model = tiny_model(args.tiny).to(device=device, dtype=dtype)
    return model, None, f"tiny random {args.tiny}", False


def make_prompts(tok_path: str | None, vocab: int, n: int, seed: int) -> list[list[int]]:
    """RAG prompts whose answer quotes a passage (reader_tasks.quote_example, on the demo
    corpus that ships in the package) when there is a tokenizer, else token strings that
    repeat themselves (the context drafter finds the repeats)."""
    rng = random.Random(seed)
    if tok_path is None:
        out = []
        for _ in range(n):
            base = [rng.randrange(vocab) for _ in range(rng.randrange(20, 60))]
            out.append(base + base[: rng.randrange(5, 20)])
        return out
    from reader_tasks import quote_example
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_path)
    docs = [json.loads(line) for line in DEMO.read_text().splitlines()]
    docs = [d for d in docs if len(d["text"].split()) >= 80]
    out = []
    while len(out) < n:
        ex = quote_example(tok, docs, rng)
        if ex is not None:
            out.append(ex.prompt_ids)
    return out


def demo_datastore(tok_path: str, work: Path):
    from specrag.indexing.kinds.datastore.build import build_datastore
    from specrag.indexing.kinds.datastore.config import DatastoreConfig
    from specrag.indexing.kinds.datastore.search import DatastoreSearcher
    from specrag.types import Document, no_progress

    docs = [json.loads(line) for line in DEMO.read_text().splitlines()]
    docs = [Document(d["_id"], d["text"], d.get("title")) for d in docs]
    cfg = DatastoreConfig(tokenizer=tok_path)
    out = work / "datastore"
    out.mkdir(parents=True, exist_ok=True)
    build_datastore(docs, out, cfg, no_progress)
    return DatastoreSearcher.load(out, cfg, np.array([d.id for d in docs]))


def run_method(model, prompts, config, drafters_fn, repeats: int) -> dict:
    """Totals over the prompts, each prompt's best of ``repeats`` (after one warm-up run
    that also captures graphs)."""
    outs, tot = [], {"tokens": 0, "seconds": 0.0, "decode_seconds": 0.0, "steps": 0}
    tot.update(accepted=0, nodes=0)
    for prompt in prompts:
        generate(model, prompt, config, drafters=drafters_fn())  # warm-up / capture
        best = None
        for _ in range(repeats):
            out, stats = generate(model, prompt, config, drafters=drafters_fn())
            if best is None or stats.seconds < best[1].seconds:
                best = (out, stats)
        out, stats = best
        outs.append(out)
        tot["tokens"] += len(out)
        tot["seconds"] += stats.seconds
        tot["decode_seconds"] += stats.seconds - stats.prefill_seconds
        tot["steps"] += stats.verify_steps
        tot["accepted"] += stats.accepted_draft_tokens
        tot["nodes"] += stats.drafted_tokens
    steps = max(1, tot["steps"])
    return {
        "outputs": outs,
        "tokens": tot["tokens"],
        "tokens_per_s": round(tot["tokens"] / tot["seconds"], 1),
        "decode_tokens_per_s": round(tot["tokens"] / max(1e-9, tot["decode_seconds"]), 1),
        "ms_per_step": round(tot["decode_seconds"] / steps * 1000, 3),
        "tokens_per_forward": round((tot["tokens"] - len(prompts)) / steps, 2),
        "nodes_per_step": round(1 + tot["nodes"] / steps, 1),
        "accepted_per_step": round(tot["accepted"] / steps, 2),
    }


def weight_read(model) -> dict:
    """The model's weight bytes and the time to read them once from device memory."""
    device = torch.device(model.device)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    measured = measured_bandwidth(device)
    nominal = nominal_bandwidth(device)
    return {
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "dtype": str(model.dtype).replace("torch.", ""),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "weight_MB": round(weight_bytes / 2**20, 1),
        "weight_read_ms_nominal": round(weight_bytes / nominal * 1000, 3) if nominal else None,
        "weight_read_ms_measured_bw": round(weight_bytes / measured * 1000, 3),
        "measured_bandwidth_GBps": round(measured / 1e9, 1),
    }


def decode_modes(
    model,
    prompts: list[list[int]],
    drafters_fn,
    *,
    max_new_tokens: int = 64,
    budgets: tuple[int, ...] = (16,),
    modes: tuple[str, ...] = tuple(MODES),
    repeats: int = 2,
    eos_ids: tuple[int, ...] = (),
    plain_only: bool = False,
) -> list[dict]:
    """One row per (method, cache mode, node budget): plain greedy, then speculative with
    ``drafters_fn()`` at each verify budget; each row's outputs compared with the first
    row's (plain greedy, dynamic cache). A mode that raises becomes an ``error`` row."""
    from specrag.generation import runner as runner_mod

    rows, ref = [], None
    methods = [("plain", None, 16)]
    if not plain_only:
        methods += [("speculative", drafters_fn, b) for b in budgets]
    for method, fn, budget in methods:
        for mode in modes:
            cfg = DecodeConfig(
                max_new_tokens=max_new_tokens,
                eos_token_ids=eos_ids,
                max_nodes=budget,
                **MODES[mode],
            )
            t = time.perf_counter()
            try:
                r = run_method(model, prompts, cfg, fn or (lambda: None), repeats)
            except Exception as exc:  # report and go on: one broken mode must not hide the rest
                rows.append({"method": method, "mode": mode, "error": repr(exc)[:300]})
                print(f"{method} {mode}: FAILED {exc!r}", flush=True)
                continue
            outs = r.pop("outputs")
            ref = outs if ref is None else ref
            shared = runner_mod._static_runners.get(model, {}).get(True)
            r.update(
                method=method,
                mode=mode,
                max_nodes=budget if fn else None,
                identical_to_plain_dynamic=outs == ref,
                graphs_replayed=bool(
                    MODES[mode].get("cuda_graphs")
                    and shared is not None
                    and any(b.graph is not None for b in shared.buckets.values())
                ),
                wall_s=round(time.perf_counter() - t, 1),
            )
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


COLUMNS = [
    "method",
    "cache",
    "CUDA graphs",
    "nodes/verify",
    "ms/step",
    "x weight read",
    "tokens/s",
    "decode tokens/s",
    "tokens/forward",
    "identical to greedy",
]


def table_rows(rows: list[dict], weight_read_ms: float) -> list[list]:
    """``rows`` in ``COLUMNS`` order (``bench_results.table(caption, COLUMNS, ...)``)."""
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["method"], r["mode"], "-", "-", "FAILED", "-", "-", "-", "-", r["error"]])
            continue
        out.append(
            [
                r["method"],
                r["mode"].split("+")[0],
                "replayed" if r["graphs_replayed"] else ("eager" if "graphs" in r["mode"] else "-"),
                r["max_nodes"] or 1,
                r["ms_per_step"],
                round(r["ms_per_step"] / weight_read_ms, 1),
                r["tokens_per_s"],
                r["decode_tokens_per_s"],
                r["tokens_per_forward"],
                r["identical_to_plain_dynamic"],
            ]
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help="a trained reader folder (scripts/train_reader_lm.py)")
    src.add_argument("--random-llama", choices=["1b"], help="random TinyLlama-1.1B-shaped model")
    src.add_argument("--tiny", choices=["gpt2", "llama"], help="tiny random model (rehearsal)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cuda: bf16, cpu: fp32")
    ap.add_argument("--n-prompts", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--max-nodes", default=None, help="verify node budgets, comma-separated (cuda: 16,64)"
    )
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--plain-only", action="store_true", help="no speculative runs")
    ap.add_argument("--no-datastore", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument(
        "--result",
        default=None,
        help="also write benchmarks/results/<RESULT>.json (scripts/bench_results.py)",
    )
    args = ap.parse_args()
    if not (args.model or args.random_llama or args.tiny):
        args.tiny = "gpt2"

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    default_budgets = "16,64" if device.type == "cuda" else "16"
    budgets = tuple(int(x) for x in (args.max_nodes or default_budgets).split(","))
    model, tok_path, desc, trained = load_model(args, device, dtype)
    header = {"model": desc, **weight_read(model)}
    print(json.dumps(header), flush=True)
    prompts = make_prompts(tok_path, model.config.vocab_size, args.n_prompts, args.seed)
    eos = getattr(model.config, "eos_token_id", None)
    eos_ids = (eos,) if isinstance(eos, int) and eos < model.config.vocab_size else ()
    store = None
    if tok_path and not args.no_datastore and not args.plain_only:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            store = demo_datastore(tok_path, Path(tmp))
            print(f"datastore over the demo corpus: {time.perf_counter() - t:.1f} s", flush=True)

    def drafters_fn():
        if store is None:
            return [ContextDrafter()]
        from specrag.generation.drafters import DatastoreDrafter

        return [ContextDrafter(), DatastoreDrafter(store)]

    rows = decode_modes(
        model,
        prompts,
        drafters_fn,
        max_new_tokens=args.max_new_tokens,
        budgets=budgets,
        modes=tuple(m for m in args.modes.split(",") if m),
        repeats=args.repeats,
        eos_ids=eos_ids,
        plain_only=args.plain_only,
    )
    mismatches = [
        f"{r['method']}/{r['mode']}/{r['max_nodes']}"
        for r in rows
        if not r.get("identical_to_plain_dynamic", True)
    ]
    failed = [f"{r['method']}/{r['mode']}" for r in rows if "error" in r]
    wr = header["weight_read_ms_nominal"] or header["weight_read_ms_measured_bw"]
    body = table_rows(rows, wr)
    print(f"\n{desc}: {header['parameters_M']}M params, {header['dtype']}, {header['device']}")
    print(
        f"weight read: {wr} ms ({'nominal' if header['weight_read_ms_nominal'] else 'measured'}"
        f" bandwidth; measured copy {header['measured_bandwidth_GBps']} GB/s)"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in body:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print(f"identity mismatches: {mismatches or 'none'}; failed: {failed or 'none'}")
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"header": header, "rows": rows, "mismatches": mismatches, "failed": failed},
                indent=2,
            )
        )
    if args.result:
        from bench_results import table, write_result

        caption = (
            f"{desc} ({header['parameters_M']}M parameters, {header['dtype']}, "
            f"{header['device']}): weight read {wr} ms"
        )
        write_result(
            args.result,
            "Decoding at the verify-cost limit: dynamic vs static KV cache vs CUDA graphs",
            [table(caption, COLUMNS, body)],
            data={"header": header, "rows": rows},
        )
    if failed or (mismatches and trained):
        sys.exit(1)


if __name__ == "__main__":
    main()
