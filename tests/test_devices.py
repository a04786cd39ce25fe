"""The device rule: public lib functions take inputs on any device and return CPU tensors.

On the CPU this checks the plumbing; with `pytest --device cuda` it checks the rule itself.
"""

import dataclasses

import torch

from lib import ablation, activations, attention, interventions, latent, lens, metrics, patching, steering
from lib.data import encode
from lib.devices import returns_cpu, to_cpu, to_device

PROMPTS = ["w5 w6 w7 w8 w9", "w10 w11", "w3 w4 w5"]


def tensors(value):
    """Every tensor inside a result (dicts, lists, tuples, dataclasses)."""
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    elif dataclasses.is_dataclass(value):
        value = [getattr(value, f.name) for f in dataclasses.fields(value)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def test_to_device_walks_nested_values():
    @dataclasses.dataclass(frozen=True)
    class Box:
        x: torch.Tensor
        note: str = "kept"

    value = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": Box(torch.ones(1))}
    moved = to_device(value, "cpu")
    assert moved["a"][1][1] == 3 and moved["b"].note == "kept"
    assert all(t.device.type == "cpu" for t in tensors(to_cpu(value)))
    assert returns_cpu(lambda: torch.ones(1))().device.type == "cpu"


def test_public_functions_return_cpu_tensors(tiny_model, device):
    model, enc = tiny_model, encode(tiny_model.tokenizer, PROMPTS)  # inputs on the CPU
    on_model = encode(tiny_model.tokenizer, PROMPTS, device)        # and on the model's device
    arch, run = lens.Arch(model), interventions.Run(enc)
    metric = metrics.prob_metric(torch.tensor([5, 6, 7]))
    vectors = torch.zeros(len(PROMPTS), arch.d_model)
    results = {
        "last_token_resid": lens.last_token_resid(model, PROMPTS),
        "unembed": lens.unembed(arch, torch.zeros(2, arch.d_model, device=device)),
        "residual_states": activations.residual_states(model, on_model),
        "block_writes": activations.block_writes(model, enc, 1),
        "attention_patterns": attention.attention_patterns(model, on_model),
        "shared_prefix_resid": latent.shared_prefix_resid(model, "w5 w6", [" w7", " w8 w9"]),
        "steered_logits": steering.steered_logits(model, PROMPTS, 1, vectors),
        "collect": interventions.collect(model, on_model, "resid_pre"),
        "mean_activations": ablation.mean_activations(model, enc, "head"),
        "ablate_heads": ablation.ablate_heads(model, on_model, [(1, 0)], mode="zero", last_only=True),
        "patch": ablation.patch(model, run, run, [("mlp_out", 1)], last_only=True),
        "patch_sweep": patching.patch_sweep(model, run, run, "resid_pre", metric, layers=[0], positions=[-1]),
        "ablation_sweep": ablation.ablation_sweep(model, run, "mlp_out", metric, layers=[0], positions=[-1]),
    }
    for name, result in results.items():
        found = tensors(result)
        assert found, name
        assert {t.device.type for t in found} == {"cpu"}, f"{name} returned a tensor off the CPU"
