#!/usr/bin/env python3
"""Reference outputs of torchvision's encoders, for graft's architecture tests.

Run once by a developer (needs torch and torchvision; CI does not):

    python scripts/torchvision-fixtures.py [ARCH...]

For each architecture it builds the torchvision model, fills every tensor of its state dict
with the deterministic values of graft's `graft_model::synthetic` (same generator, same bits),
runs a fixed synthetic batch in eval mode, and writes
crates/graft-model/tests/fixtures/torchvision/NAME.json (graft's name: `-` for `_`): the state dict's keys and shapes,
the pooled features and the logits; and resnet18-stem.pth, a small file of torch.save's own. The Rust tests regenerate the same weights and input and
compare burn's and ONNX Runtime's outputs with these.
"""

import json
import pathlib
import sys

import numpy as np
import torch
import torchvision

SEED = 20261206
INPUT_SEED = 7
BATCH = 2
SIZE = 224
ARCHS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/graft-model/tests/fixtures/torchvision"


def fnv1a(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def uniform(name: str, n: int, seed: int) -> np.ndarray:
    """graft_model::synthetic::uniform: n values in [0, 1), as float64."""
    base = np.uint64(seed ^ fnv1a(name))
    i = np.arange(1, n + 1, dtype=np.uint64)
    z = base + GOLDEN * i  # uint64 arithmetic wraps, as wrapping_add/wrapping_mul
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))


# graft_model::synthetic::bn_scale_floor, by torchvision's name.
BN_SCALE_FLOOR = {"efficientnet_b0": 0.82, "mobilenet_v3_small": 0.7, "mobilenet_v3_large": 0.65}


def draw(name: str, shape, u: np.ndarray, floor: float) -> np.ndarray:
    """graft_model::synthetic::draw, in float64, then rounded once to float32."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean") or name.endswith("bias"):
        v = 0.2 * (u - 0.5)
    elif len(shape) == 1:
        v = floor + 0.4 * u
    else:
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / max(fan_in, 1))
    return v.astype(np.float32)


def fill(model: torch.nn.Module, seed: int, floor: float):
    keys = []
    sd = model.state_dict()
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = list(t.shape)
        values = draw(name, shape, uniform(name, t.numel(), seed), floor).reshape(shape)
        t.copy_(torch.from_numpy(values))
        keys.append([name, shape])
    return keys


def torch_saved_stem():
    """A small file written by torch.save itself (zip format, with the int64
    num_batches_tracked counter), holding the ResNet stem of the synthetic weights: the test
    that graft reads torch's own writer bit for bit."""
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        fill(model, SEED, 0.3)
    sd = model.state_dict()
    stem = {k: v for k, v in sd.items() if k.startswith(("conv1.", "bn1."))}
    path = OUT / "resnet18-stem.pth"
    torch.save(stem, path)
    print(f"torch.save of the stem ({len(stem)} tensors) -> {path}")


def main(archs):
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(
        (4.0 * uniform("input", BATCH * 3 * SIZE * SIZE, INPUT_SEED) - 2.0)
        .astype(np.float32)
        .reshape(BATCH, 3, SIZE, SIZE)
    )
    for arch in archs:
        model = getattr(torchvision.models, arch)(weights=None).eval()
        with torch.no_grad():
            keys = fill(model, SEED, BN_SCALE_FLOOR.get(arch, 0.3))
            pooled = {}
            hook = model.avgpool.register_forward_hook(
                lambda _m, _i, out: pooled.__setitem__("features", torch.flatten(out, 1))
            )
            logits = model(x)
            hook.remove()
        features = pooled["features"]
        name = arch.replace("_", "-")  # graft's name for it
        record = {
            "arch": name,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "seed": SEED,
            "input": {"batch": BATCH, "size": SIZE, "seed": INPUT_SEED},
            "keys": keys,
            # float32 printed with 9 significant digits: the exact value.
            "features": [float(f"{v:.9g}") for v in features.flatten().tolist()],
            "logits": [float(f"{v:.9g}") for v in logits.flatten().tolist()],
        }
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(record, separators=(",", ":")) + "\n")
        print(
            f"{arch}: features |max| {features.abs().max():.3f}, "
            f"logits |max| {logits.abs().max():.3f} -> {path}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ARCHS)
    torch_saved_stem()
