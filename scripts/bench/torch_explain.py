"""Reference for `graft bench explain`: what a PyTorch user writes to explain one photo.

torchvision MobileNetV2 on the CPU (graft's safetensors weights, read with numpy), eval mode,
with a linear head of the run's class count on the pooled features (its weights do not change
the time). Per image, batch 1, as a user explains one photo at a time: PIL decode and the
torchvision evaluation transform, then
  1. pytorch-grad-cam's GradCAM at the last feature map (features[-1]), predicted class;
  2. the same at an earlier block (features[BLOCK], graft's --layer BLOCK);
  3. when captum is installed, its LayerIntegratedGradients at that block (8 points, right
     Riemann sum, the blank image as baseline), summed over channels: graft's
     --method integrated-gradients --layer BLOCK;
  4. 1 plus the quality tests graft computes: the hottest 20 % of pixels hidden, then kept
     alone, and deletion and insertion curves of STEPS + 1 points each (pixels blacked out
     hottest first; revealed hottest first onto a blurred copy), all perturbed images scored
     in one batch, the areas under the curves.
Prints one JSON line on stdout (milliseconds per image, each the median over the images);
`graft bench explain` reads it.
"""

import argparse
import json
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import GradCAM
from torchvision import transforms as T
from torch.nn import functional as F

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def box_blur(x, r):
    """graft's insertion baseline: three box passes of radius r each way, edges clamped."""
    for _ in range(3):
        x = F.avg_pool2d(F.pad(x, (r, r, 0, 0), mode="replicate"), (1, 2 * r + 1), stride=1)
        x = F.avg_pool2d(F.pad(x, (0, 0, r, r), mode="replicate"), (2 * r + 1, 1), stride=1)
    return x


def quality(model, x, heat, cls, steps, share):
    """The perturbed images of graft's quality metrics, scored in one batch."""
    _, _, h, w = x.shape
    order = torch.from_numpy(np.argsort(-heat.reshape(-1), kind="stable").copy())
    fill = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(3, 1)
    img = x[0].reshape(3, -1)
    blurred = box_blur(x, max(h // 14, 1))[0].reshape(3, -1)
    top = int(round(share * h * w))
    images = []
    hidden = img.clone()
    hidden[:, order[:top]] = fill
    images.append(hidden)
    kept = fill.expand(3, h * w).clone()
    kept[:, order[:top]] = img[:, order[:top]]
    images.append(kept)
    for i in range(steps + 1):
        k = (h * w * i) // steps
        d = img.clone()
        d[:, order[:k]] = fill
        images.append(d)
    for i in range(steps + 1):
        k = (h * w * i) // steps
        r = blurred.clone()
        r[:, order[:k]] = img[:, order[:k]]
        images.append(r)
    batch = torch.stack(images).reshape(-1, 3, h, w)
    with torch.inference_mode():
        p = torch.softmax(model(batch), dim=1)[:, cls].numpy()
    deletion = np.trapezoid(p[2 : steps + 3], dx=1.0 / steps)
    insertion = np.trapezoid(p[steps + 3 :], dx=1.0 / steps)
    return float(deletion), float(insertion)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True, help="text file, one image path per line")
    ap.add_argument("--weights", required=True, help="mobilenet-v2 safetensors")
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--block", type=int, default=13)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    paths = [p for p in open(a.list).read().splitlines() if p]
    model = torchvision.models.mobilenet_v2()
    missing, _ = model.load_state_dict(load_safetensors(a.weights), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        sys.exit(f"weights lack {missing[:3]}")
    torch.manual_seed(0)
    model.classifier = torch.nn.Linear(model.last_channel, a.classes)
    model.eval()
    tf = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)]
    )

    def load(path):
        with Image.open(path) as im:
            return tf(im.convert("RGB")).unsqueeze(0)

    last = GradCAM(model=model, target_layers=[model.features[-1]])
    block = GradCAM(model=model, target_layers=[model.features[a.block]])
    times = {"grad_cam_last": [], "grad_cam_block": [], "grad_cam_quality": []}
    try:
        from captum.attr import LayerIntegratedGradients

        integrated = LayerIntegratedGradients(model, model.features[a.block])
        times["ig_block"] = []
    except ImportError:
        integrated = None
    aucs = []
    # The first image warms up the allocator and kernels; it is not timed.
    for i, path in enumerate([paths[0]] + paths):
        t0 = time.perf_counter()
        x = load(path)
        last(input_tensor=x, targets=None)  # the predicted class
        t1 = time.perf_counter()
        x = load(path)
        block(input_tensor=x, targets=None)
        t2 = time.perf_counter()
        if integrated is not None:
            x = load(path)
            with torch.inference_mode():
                cls = int(model(x).argmax(1))
            attr = integrated.attribute(
                x, baselines=torch.zeros_like(x), target=cls, n_steps=8, method="riemann_right"
            )
            attr.sum(1).clamp(min=0).detach()
        t_ig = time.perf_counter()
        x = load(path)
        heat = last(input_tensor=x, targets=None)[0]
        cls = int(last.outputs.argmax(1))
        auc = quality(model, x, heat, cls, a.steps, a.share)
        t3 = time.perf_counter()
        if i == 0:
            continue
        times["grad_cam_last"].append((t1 - t0) * 1000)
        times["grad_cam_block"].append((t2 - t1) * 1000)
        times["grad_cam_quality"].append((t3 - t_ig) * 1000)
        if integrated is not None:
            times["ig_block"].append((t_ig - t2) * 1000)
        aucs.append(auc)
    out = {k: statistics.median(v) for k, v in times.items()}
    out.update(
        {
            "images": len(paths),
            "torch": torch.__version__,
            "threads": a.threads,
            "deletion_auc": statistics.mean(d for d, _ in aucs),
            "insertion_auc": statistics.mean(i for _, i in aucs),
        }
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
