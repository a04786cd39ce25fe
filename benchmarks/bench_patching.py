"""How fast is activation patching? A residual-stream sweep (layer x position) timed four ways.

In one process, on random-weight models of SmolLM2-135M's shape and of a 1B Llama shape:
  floor     the same number of plain forward passes, batched as the lib batches them
  lib       lib.patching.patch_sweep: every batch row patched at its own site, one trace per chunk
  loop      nnsight, one trace per patch (as its docs teach)
  tl        TransformerLens 4: TransformerBridge from a local directory + patching.get_act_patch_resid_pre
Prints each time, its ratio to the floor, whether all methods agree, and the device; writes JSON.

    python benchmarks/bench_patching.py                     # 135m shape on CPU; both shapes on CUDA
    python benchmarks/bench_patching.py --shapes 135m 1b --out benchmarks/results/h100.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `lib` and `tests` without installing
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-patch progress bar

SHAPES = {  # name: (LlamaConfig overrides, positions)
    "135m": (dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True), 16),
    "1b": (dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True), 16),
    "smoke": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True), 8),  # a seconds-long check
}


def save_random_model(shape: str, directory: Path) -> Path:
    """A seeded random-weight Llama of `shape` with the tests' word-level tokenizer, saved to disk."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.tiny import tiny_tokenizer

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape][0], max_position_embeddings=2048, rope_theta=100000.0,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` calls (after one warm-up call on CUDA), and the last result."""
    result = fn() if device == "cuda" else None
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def inputs(vocab: int, n_pos: int, device: str) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """One clean/corrupt pair of random tokens (the first half differs) and two answer tokens."""
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(10, vocab, (1, n_pos), generator=g)
    corrupt = clean.clone()
    corrupt[:, : n_pos // 2] = torch.randint(10, vocab, (1, n_pos // 2), generator=g)
    mask = torch.ones_like(clean)
    enc = lambda ids: {"input_ids": ids.to(device), "attention_mask": mask.to(device)}  # noqa: E731
    return enc(clean), enc(corrupt), torch.tensor([5]), torch.tensor([7])


def bench_shape(shape: str, device: str, repeats: int, skip: set[str], positions: int | None) -> dict:
    from lib.arch import Arch
    from lib.models import load_model
    from lib.patching import auto_chunk_size, logit_diff_metric, patch_sweep

    directory = save_random_model(shape, Path(tempfile.mkdtemp()))
    model = load_model(str(directory), device)
    arch, n_pos = Arch(model), positions or SHAPES[shape][1]
    clean, corrupt, answer, wrong = inputs(arch.vocab_size, n_pos, device)
    metric = logit_diff_metric(answer, wrong)
    n_rows = arch.n_layers * n_pos
    chunk = min(n_rows, auto_chunk_size(model, n_pos))
    methods = {
        "floor": lambda: floor(arch, corrupt, n_rows, chunk),
        "lib": lambda: patch_sweep(model, clean, corrupt, "resid_pre", metric, chunk_size=chunk).values[0],
        "loop": lambda: nnsight_loop(model, clean, corrupt, metric),
        "tl": lambda: transformer_lens_sweep(directory, device, clean, corrupt, answer, wrong),
    }
    times, values = {}, {}
    for name, fn in methods.items():
        if name in skip:
            continue
        times[name], values[name] = timed(fn, device, 1 if name in ("loop", "tl") else repeats)
        print(f"  {name:<6} {times[name]:9.3f} s", flush=True)
    reference = values["lib"]
    agree = {k: float((v.float().cpu() - reference.cpu()).abs().max()) for k, v in values.items() if k != "floor"}
    del model
    return {"shape": shape, "rows": n_rows, "positions": n_pos, "layers": arch.n_layers, "chunk": chunk,
            "times_s": times, "ratio_to_floor": {k: t / times["floor"] for k, t in times.items()},
            "max_abs_diff_vs_lib": agree}


@torch.no_grad()
def floor(arch, corrupt: dict, n_rows: int, chunk: int) -> torch.Tensor:
    """The same forward passes with no patching: `n_rows` copies of the corrupt prompt, chunked."""
    out = []
    for start in range(0, n_rows, chunk):
        rows = min(chunk, n_rows - start)
        enc = {k: v.expand(rows, -1) for k, v in corrupt.items()}
        out.append(arch.hf(**enc, logits_to_keep=1).logits[:, -1, 0])
    return torch.cat(out)


@torch.no_grad()
def nnsight_loop(model, clean: dict, corrupt: dict, metric) -> torch.Tensor:
    """One trace per (layer, position), as nnsight's tutorials teach."""
    import nnsight

    from lib.arch import Arch

    arch = Arch(model)
    with model.trace(clean):
        acts = nnsight.save([arch.layers[i].input for i in range(arch.n_layers)])
    n_pos = clean["input_ids"].shape[1]
    out = torch.empty(arch.n_layers, n_pos)
    for layer in range(arch.n_layers):
        for pos in range(n_pos):
            with model.trace(corrupt):
                arch.layers[layer].input[:, pos] = acts[layer][:, pos]
                logits = nnsight.save(model.output.logits[:, -1])
            out[layer, pos] = metric(logits.float(), torch.zeros(1, dtype=torch.long))[0]
    return out


_TL_CACHE: dict = {}


@torch.no_grad()
def transformer_lens_sweep(directory: Path, device: str, clean: dict, corrupt: dict, answer, wrong) -> torch.Tensor:
    """TransformerLens 4's own sweep on a TransformerBridge booted from the same local directory."""
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge

    key = str(directory)
    if key not in _TL_CACHE:
        _TL_CACHE.clear()
        _TL_CACHE[key] = TransformerBridge.boot_transformers(key, device=device)
    bridge = _TL_CACHE[key]
    _, clean_cache = bridge.run_with_cache(clean["input_ids"])

    def metric(logits):
        last = logits[0, -1]
        return last[answer.item()] - last[wrong.item()]

    return patching.get_act_patch_resid_pre(bridge, corrupt["input_ids"], clean_cache, metric)


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None,
                        help="default: both on CUDA, 135m on CPU (the 1B shape takes minutes per method there)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of floor and lib (best taken)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["loop", "tl"])
    parser.add_argument("--positions", type=int, default=None, help="prompt length (default 16)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    parser.add_argument("--plot", nargs="+", type=Path, default=None,
                        help="instead of measuring: bar chart of these JSON results, saved to --figure")
    parser.add_argument("--figure", type=Path, default=Path("appendix/patching_speed.png"))
    args = parser.parse_args()
    if "tl" not in args.skip and importlib.util.find_spec("transformer_lens") is None:
        print("transformer_lens is not installed (pip install -r benchmarks/requirements.txt): skipping it")
        args.skip.append("tl")
    if args.plot:
        plot(args.plot, args.figure)
        return
    shapes = args.shapes or (["135m", "1b"] if args.device == "cuda" else ["135m"])
    result = {"device": device_name(args.device), "date": datetime.date.today().isoformat(),
              "torch": torch.__version__, "shapes": []}
    print(f"device: {result['device']}  torch {torch.__version__}")
    for shape in shapes:
        print(f"shape {shape}: residual stream sweep, layer x position", flush=True)
        result["shapes"].append(bench_shape(shape, args.device, args.repeats, set(args.skip), args.positions))
    report(result)
    out = args.out or Path(__file__).parent / "results" / f"{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def report(result: dict) -> None:
    print(f"\n{result['device']}, {result['date']}")
    print(f"{'shape':<6} {'rows':>5} {'method':<6} {'time (s)':>10} {'x floor':>9} {'max |diff| vs lib':>18}")
    for r in result["shapes"]:
        for name, t in r["times_s"].items():
            diff = r["max_abs_diff_vs_lib"].get(name)
            print(f"{r['shape']:<6} {r['rows']:>5} {name:<6} {t:>10.3f} {r['ratio_to_floor'][name]:>9.2f} "
                  f"{'' if diff is None else f'{diff:.2e}':>18}")
        ok_lib = r["ratio_to_floor"]["lib"] <= 1.10
        agree = all(d < 1e-2 for d in r["max_abs_diff_vs_lib"].values())
        tl = r["times_s"].get("tl")
        speedup = "" if tl is None else f"; TransformerLens / lib = {tl / r['times_s']['lib']:.1f}x"
        print(f"  lib <= 1.10x floor: {ok_lib}; all agree (|diff| < 1e-2): {agree}{speedup}")


def plot(paths: list[Path], figure: Path) -> None:
    """Seaborn bar chart of time / floor per method, one group per (device, shape), log scale."""
    import pandas as pd
    import seaborn as sns
    from matplotlib import pyplot as plt

    rows = []
    for path in paths:
        result = json.loads(path.read_text())
        parts = result["device"].split(", ")
        device = f"CPU, {parts[-1]}" if parts[0].startswith("CPU") else parts[0].replace("NVIDIA ", "")
        for r in result["shapes"]:
            rows += [{"run": f"{device}\n{r['shape']}, {r['rows']} patches", "method": METHODS[m],
                      "time / floor": ratio} for m, ratio in r["ratio_to_floor"].items()]
    sns.set_theme(style="whitegrid")
    _, ax = plt.subplots(figsize=(11, 4))
    sns.barplot(pd.DataFrame(rows), x="run", y="time / floor", hue="method", ax=ax)
    ax.set(yscale="log", xlabel="", ylabel="time / floor (log scale)",
           title="Residual-stream patching sweep: time relative to the floor")
    ax.axhline(1.1, color="grey", ls="--", lw=1)
    ax.legend(title="method", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.parent.mkdir(parents=True, exist_ok=True)
    plt.tight_layout()
    plt.savefig(figure, dpi=150)
    print(f"wrote {figure}")


METHODS = {"floor": "floor (plain batched)", "lib": "lib.patching (batched)", "loop": "nnsight, one trace per patch",
           "tl": "TransformerLens 4.3"}


if __name__ == "__main__":
    main()
