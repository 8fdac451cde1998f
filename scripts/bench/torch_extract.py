"""Reference for `graft bench extract`: the same feature extraction a PyTorch user writes.

A torchvision encoder (MobileNetV2, ResNet-18/34/50, EfficientNet-B0, MobileNetV3) on the CPU,
eval mode, `torch.inference_mode()`; PIL decode, the torchvision evaluation transform
(Resize(256) — bicubic for EfficientNet-B0 —, CenterCrop(224), ToTensor, Normalize), a
DataLoader with the given batch size and workers; pooled features per image.
The weights come from graft's safetensors cache (read here with numpy, no extra package), so
both sides run the same network. Prints one JSON line on stdout; `graft bench extract` reads it.
"""

import argparse
import json
import resource
import struct
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            continue  # e.g. BatchNorm's num_batches_tracked; not needed for eval
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Files(torch.utils.data.Dataset):
    def __init__(self, paths, tf):
        self.paths, self.tf = paths, tf

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True, help="text file, one image path per line")
    ap.add_argument("--arch", default="mobilenet_v2", help="torchvision model name")
    ap.add_argument("--weights", required=True, help="the encoder's safetensors")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", type=int, default=16, help="feature rows to return for comparison")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    paths = [p for p in open(a.list).read().splitlines() if p]
    model = getattr(torchvision.models, a.arch)()
    state = load_safetensors(a.weights)
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    # Weights imported from a fine-tuned model have no ImageNet classifier: features only.
    head = [k for k in missing if k.startswith(("classifier.", "fc."))]
    if len(head) < len(missing):
        sys.exit(f"weights lack {[k for k in missing if k not in head][:3]}")
    model.eval()
    bicubic = T.InterpolationMode.BICUBIC if a.arch.startswith("efficientnet") else None
    tf = T.Compose(
        [
            T.Resize(256, interpolation=bicubic) if bicubic else T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    loader = torch.utils.data.DataLoader(
        Files(paths, tf), batch_size=a.batch, num_workers=a.workers, shuffle=False
    )
    kept = []
    pooled = {}
    body = torch.nn.Sequential(*list(model.children())[:-1])  # all but the classifier
    if hasattr(model, "avgpool"):
        model.avgpool.register_forward_hook(lambda _m, _i, out: pooled.update(f=out.flatten(1)))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in loader:
            if head and hasattr(model, "avgpool"):
                # No classifier to run: the network up to its pooled features.
                f = body(x).flatten(1)
            elif hasattr(model, "avgpool"):
                model(x)  # graft's ONNX graph computes the logits too
                f = pooled["f"]
            else:
                f = model.features(x)
                f = torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1)
                if not head:
                    model.classifier(f)
            if len(kept) < a.keep:
                kept.extend(f[: a.keep - len(kept)].tolist())
    secs = time.perf_counter() - t0
    rss_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(
        json.dumps(
            {
                "images": len(paths),
                "seconds": secs,
                "torch": torch.__version__,
                "threads": a.threads,
                "workers": a.workers,
                "peak_rss_mb": rss_kb / 1024,
                "features": kept,
            }
        )
    )


if __name__ == "__main__":
    main()
