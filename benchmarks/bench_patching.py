"""How fast is activation patching? A residual-stream sweep (layer x position) timed six ways, plus floors.

In one process, on random-weight models of SmolLM2-135M's shape and of a 1B Llama shape:
  floor      the same number of plain forward passes, batched as the lib batches them
  lib        lib.patching.patch_sweep: every batch row patched at its own site, one trace per chunk
  loop       nnsight, one trace per patch (as its docs teach)
  tl         TransformerLens 4: TransformerBridge from a local directory + patching.get_act_patch_resid_pre
  pyvene     pyvene 0.1: one IntervenableModel and one call per (layer, position), as its causal-tracing tutorial
  attrib     lib.attribution.attribution_sweep: the first-order estimate of the same sweep (3 passes, not 1 per patch)
  grad_floor plain PyTorch: one forward pass on the clean row, one forward+backward on the corrupt row (attrib's floor)

The method: every method runs once untimed first, on every device (the warm-up); those results are
compared (lib, loop, tl and pyvene must agree within --tolerance, attrib is reported as a rank
correlation with lib) and nothing is timed unless they agree. Then --rounds rounds, each timing
every method once in an order rotated by one each round, so no method always runs first; each
method's time is the median over rounds, with min and max, and its ratio to the floor is the median
of the per-round ratios (method / floor of the same round). A ratio below 0.95x for an exact sweep
is flagged as a suspect measurement.

    python benchmarks/bench_patching.py                     # 135m shape on CPU; both shapes on CUDA
    python benchmarks/bench_patching.py --shapes 135m 1b --out benchmarks/results/h100.json
    python benchmarks/bench_patching.py --plot benchmarks/results/*.json   # the appendix's figure
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `lib` and `tests` without installing
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-patch progress bar
import beartype  # noqa: E402,F401  (before nnsight: see tests/conftest.py)

SHAPES = {  # name: (LlamaConfig overrides, positions)
    "135m": (dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True), 16),
    "1b": (dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True), 16),
    "smoke": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True), 8),  # a seconds-long check
}
EXACT = ("lib", "loop", "tl", "pyvene")  # methods that compute the exact sweep and must agree
OPTIONAL = {"tl": "transformer_lens", "pyvene": "pyvene"}  # method: module (benchmarks/requirements.txt)
METHODS = {"floor": "floor (plain batched)", "lib": "lib.patching (batched)", "loop": "nnsight, one trace per patch",
           "tl": "TransformerLens 4.3", "pyvene": "pyvene 0.1.8, one call per patch",
           "attrib": "attribution patching (lib)", "grad_floor": "attribution floor (fwd + fwd/bwd)"}


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


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    """Wall time of one call, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def inputs(vocab: int, n_pos: int, device: str) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """One clean/corrupt pair of random tokens (the first half differs) and two answer tokens."""
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(10, vocab, (1, n_pos), generator=g)
    corrupt = clean.clone()
    corrupt[:, : n_pos // 2] = torch.randint(10, vocab, (1, n_pos // 2), generator=g)
    mask = torch.ones_like(clean)
    enc = lambda ids: {"input_ids": ids.to(device), "attention_mask": mask.to(device)}  # noqa: E731
    return enc(clean), enc(corrupt), torch.tensor([5]), torch.tensor([7])


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of two flattened tensors (ties are measure-zero for float effects)."""
    ra, rb = (x.flatten().double().argsort().argsort().double() for x in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def top_k_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Fraction of the k largest |a| that are also among the k largest |b|."""
    ta, tb = (set(x.flatten().abs().argsort(descending=True)[:k].tolist()) for x in (a, b))
    return len(ta & tb) / k


def make_methods(shape: str, directory: Path, model, device: str, n_pos: int, skip: set[str]) -> tuple[dict, dict]:
    """{name: zero-argument callable returning a [layer, pos] metric tensor (or anything, for floors)}, and facts."""
    from lib.arch import Arch
    from lib.attribution import attribution_sweep
    from lib.metrics import logit_diff_metric
    from lib.patching import auto_chunk_size, patch_sweep

    arch = Arch(model)
    clean, corrupt, answer, wrong = inputs(arch.vocab_size, n_pos, device)
    metric = logit_diff_metric(answer, wrong)
    n_rows = arch.n_layers * n_pos
    chunk = min(n_rows, auto_chunk_size(model, n_pos))
    methods = {
        "floor": lambda: floor(arch, corrupt, n_rows, chunk),
        "lib": lambda: patch_sweep(model, clean, corrupt, "resid_pre", metric, chunk_size=chunk).values[0],
        "loop": lambda: nnsight_loop(model, clean, corrupt, metric),
        "tl": lambda: transformer_lens_sweep(directory, device, clean, corrupt, answer, wrong),
        "pyvene": lambda: pyvene_loop(arch.hf, clean, corrupt, answer, wrong),
        "attrib": lambda: attribution_sweep(model, clean, corrupt, "resid_pre", metric).values[0],
        "grad_floor": lambda: grad_floor(arch, clean, corrupt, metric),
    }
    with torch.no_grad():
        base = float(metric(arch.hf(**corrupt, logits_to_keep=1).logits[:, -1].float(), torch.zeros(1, dtype=torch.long)))
    facts = {"shape": shape, "rows": n_rows, "positions": n_pos, "layers": arch.n_layers, "chunk": chunk,
             "corrupt_metric": base}
    return {k: v for k, v in methods.items() if k not in skip}, facts


def check_agreement(values: dict, tolerance: float, base: float) -> dict:
    """Max |difference| of every exact method from the lib, and attribution's rank agreement with it."""
    lib = values["lib"].float().cpu()
    out = {"max_abs_diff_vs_lib": {k: float((values[k].float().cpu() - lib).abs().max())
                                   for k in EXACT if k in values}}
    out["agree"] = all(d < tolerance for d in out["max_abs_diff_vs_lib"].values())
    if "attrib" in values:  # effects: metric after the patch minus the unpatched corrupt run's
        exact, estimate = lib - base, values["attrib"].float().cpu() - base
        k = max(1, lib.numel() // 10)
        out["attrib_vs_exact"] = {"spearman": spearman(estimate, exact), "top_k": k,
                                  "top_k_overlap": top_k_overlap(estimate, exact, k)}
    return out


def bench_shape(shape: str, device: str, rounds: int, skip: set[str], positions: int | None,
                tolerance: float) -> dict:
    from lib.models import load_model

    directory = save_random_model(shape, Path(tempfile.mkdtemp()))
    model = load_model(str(directory), device)
    n_pos = positions or SHAPES[shape][1]
    methods, facts = make_methods(shape, directory, model, device, n_pos, skip)
    values, warmup = {}, {}
    for name, fn in methods.items():  # warm-up on every device, and the results for the agreement check
        start = time.perf_counter()
        values[name] = fn()
        sync(device)
        warmup[name] = time.perf_counter() - start
        print(f"  warm-up {name:<10} {warmup[name]:9.3f} s", flush=True)
    agreement = check_agreement(values, tolerance, facts["corrupt_metric"])
    print(f"  agreement: {json.dumps(agreement)}", flush=True)
    if not agreement["agree"]:
        raise SystemExit(f"shape {shape}: methods disagree beyond {tolerance}; no times reported")
    names = list(methods)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotated: no method always first
        for name in order:
            times[name].append(timed(methods[name], device))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names), flush=True)
    del model
    return {**facts, "order": "rotated by one per round", "rounds": rounds, "warmup_s": warmup,
            "times_s": times, "summary": summarise(times), **agreement}


def summarise(times: dict[str, list[float]]) -> dict:
    """Per method: median, min and max time; median, min and max of the per-round ratio to the floor."""
    out = {}
    for name, ts in times.items():
        ratios = [t / f for t, f in zip(ts, times["floor"])] if "floor" in times else []
        out[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
        if ratios:
            out[name] |= {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
        if name == "attrib" and "grad_floor" in times:
            own = [t / f for t, f in zip(ts, times["grad_floor"])]
            out[name]["ratio_to_grad_floor"] = statistics.median(own)
    return out


@torch.no_grad()
def floor(arch, corrupt: dict, n_rows: int, chunk: int) -> torch.Tensor:
    """The same forward passes with no patching: `n_rows` copies of the corrupt prompt, chunked."""
    out = []
    for start in range(0, n_rows, chunk):
        rows = min(chunk, n_rows - start)
        enc = {k: v.expand(rows, -1) for k, v in corrupt.items()}
        out.append(arch.hf(**enc, logits_to_keep=1).logits[:, -1, 0])
    return torch.cat(out)


def grad_floor(arch, clean: dict, corrupt: dict, metric) -> torch.Tensor:
    """What attribution patching cannot go below: a forward pass on clean, a forward and backward on corrupt."""
    with torch.no_grad():
        arch.hf(**clean, logits_to_keep=1)
    embed = arch.hf_module("embed")
    leaf = embed(corrupt["input_ids"]).detach().requires_grad_(True)
    logits = arch.hf(inputs_embeds=leaf, attention_mask=corrupt["attention_mask"], logits_to_keep=1).logits[:, -1]
    return torch.autograd.grad(metric(logits.float(), torch.zeros(1, dtype=torch.long)).sum(), leaf)[0]


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


@torch.no_grad()
def pyvene_loop(hf, clean: dict, corrupt: dict, answer, wrong) -> torch.Tensor:
    """pyvene's causal-tracing tutorial: per (layer, position), an IntervenableModel that swaps the
    layer's input (`block_input` = resid_pre) at that position from the clean (source) run into the
    corrupt (base) run, and one call."""
    import pyvene as pv

    n_layers, n_pos = hf.config.num_hidden_layers, clean["input_ids"].shape[1]
    out = torch.empty(n_layers, n_pos)
    for layer in range(n_layers):
        for pos in range(n_pos):
            config = pv.IntervenableConfig(representations=[pv.RepresentationConfig(layer, "block_input")],
                                           intervention_types=pv.VanillaIntervention)
            intervenable = pv.IntervenableModel(config, hf)
            _, patched = intervenable(corrupt, [clean], {"sources->base": ([[[pos]]], [[[pos]]])})
            last = patched.logits[0, -1]
            out[layer, pos] = (last[answer.item()] - last[wrong.item()]).float()
    return out


_TL_CACHE: dict = {}


@torch.no_grad()
def transformer_lens_sweep(directory: Path, device: str, clean: dict, corrupt: dict, answer, wrong) -> torch.Tensor:
    """TransformerLens 4's own sweep on a TransformerBridge booted from the same local directory (booted once)."""
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
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def versions() -> dict:
    import importlib.metadata as md

    out = {"torch": torch.__version__}
    for dist in ("transformers", "nnsight", "transformer-lens", "pyvene"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None,
                        help="default: both on CUDA, 135m on CPU (the 1B shape takes minutes per method there)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, every method once per round (>= 5)")
    parser.add_argument("--skip", nargs="*", default=[], choices=[m for m in METHODS if m not in ("floor", "lib")])
    parser.add_argument("--positions", type=int, default=None, help="prompt length (default 16)")
    parser.add_argument("--tolerance", type=float, default=1e-2, help="max |difference| allowed between exact methods")
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    parser.add_argument("--plot", nargs="+", type=Path, default=None,
                        help="instead of measuring: bar chart of these JSON results, saved to --figure")
    parser.add_argument("--figure", type=Path, default=Path("appendix/patching_speed.png"))
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, args.figure)
        return
    for method, module in OPTIONAL.items():
        if method not in args.skip and importlib.util.find_spec(module) is None:
            print(f"{module} is not installed (pip install -r benchmarks/requirements.txt): skipping {method}")
            args.skip.append(method)
    shapes = args.shapes or (["135m", "1b"] if args.device.startswith("cuda") else ["135m"])
    result = {"device": device_name(args.device), "date": datetime.date.today().isoformat(), **versions(),
              "method": __doc__.split("The method: ")[1].split("\n\n")[0].replace("\n", " "), "shapes": []}
    print(f"device: {result['device']}  {versions()}")
    out = args.out or Path(__file__).parent / "results" / f"{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for shape in shapes:
        print(f"shape {shape}: residual stream sweep, layer x position", flush=True)
        result["shapes"].append(bench_shape(shape, args.device, args.rounds, set(args.skip), args.positions,
                                            args.tolerance))
        out.write_text(json.dumps(result, indent=2))  # after each shape: a long run that is cut keeps what it measured
        print(f"wrote {out}")
    report(result)


def report(result: dict) -> None:
    print(f"\n{result['device']}, {result['date']}")
    print(f"{'shape':<6} {'method':<10} {'median s':>9} {'[min, max] s':>20} {'x floor':>8} {'[min, max]':>14} "
          f"{'|diff| vs lib':>14}")
    for r in result["shapes"]:
        for name, s in r["summary"].items():
            diff = r["max_abs_diff_vs_lib"].get(name)
            spread = f"[{s['min_s']:.4f}, {s['max_s']:.4f}]"
            ratios = f"[{s['ratio_min']:.2f}, {s['ratio_max']:.2f}]"
            print(f"{r['shape']:<6} {name:<10} {s['median_s']:9.4f} {spread:>20} {s['ratio']:8.2f} {ratios:>14} "
                  f"{'' if diff is None else f'{diff:.1e}':>14}")
        suspect = [n for n in EXACT if n in r["summary"] and r["summary"][n]["ratio"] < 0.95]
        print(f"  exact methods agree (< tolerance): {r['agree']}; attribution vs exact: {r.get('attrib_vs_exact')}")
        print(f"  lib median ratio {r['summary']['lib']['ratio']:.2f}x the floor"
              + (f"; SUSPECT (below 0.95x): {suspect}" if suspect else ""))


def plot(paths: list[Path], figure: Path) -> None:
    """Seaborn bar chart of the median time / floor per method (min-max over rounds as error bars), log scale."""
    import pandas as pd
    import seaborn as sns
    from matplotlib import pyplot as plt

    rows = []
    for path in paths:
        result = json.loads(path.read_text())
        parts = result["device"].split(", ")
        device = f"CPU, {parts[-1]}" if parts[0].startswith("CPU") else parts[0].replace("NVIDIA ", "")
        for r in result["shapes"]:
            for m, s in r["summary"].items():
                if m in ("floor", "grad_floor"):
                    continue
                rows.append({"run": f"{device}\n{r['shape']}, {r['rows']} patches", "method": METHODS[m],
                             "ratio": s["ratio"], "lo": s["ratio_min"], "hi": s["ratio_max"]})
    frame = pd.DataFrame(rows)
    sns.set_theme(style="whitegrid")
    _, ax = plt.subplots(figsize=(11, 4.5))
    sns.barplot(frame, x="run", y="ratio", hue="method", ax=ax)
    ax.set(yscale="log", xlabel="", ylabel="median time / floor (log scale)",
           title="Residual-stream patching sweep: time relative to plain batched inference")
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.legend(title="method", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.parent.mkdir(parents=True, exist_ok=True)
    plt.tight_layout()
    plt.savefig(figure, dpi=150)
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
