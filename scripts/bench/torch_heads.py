"""Reference for `graft bench heads`: the same head sweep written the way a PyTorch user would.

Reads the standardised feature rows graft wrote (raw little-endian f32 / u32 files) and the
sweep (JSON), trains every configuration one after the other with torch on the CPU: nn.Linear /
MLP (ReLU, dropout), AdamW (weight decay on weights only, as graft), linear warmup + cosine
(LambdaLR, per step), CrossEntropyLoss with label smoothing and class weights, gradient norm
clipping, early stopping on validation macro-F1 with the best epoch kept. Prints one JSON line.
"""

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn


def load(work, name, dtype, cols=None):
    a = np.fromfile(f"{work}/{name}", dtype=dtype)
    return a.reshape(-1, cols) if cols else a


def macro_f1(pred, y, c):
    f1s = []
    for k in range(c):
        tp = int(((pred == k) & (y == k)).sum())
        support = int((y == k).sum())
        predicted = int((pred == k).sum())
        if support == 0:
            continue
        p = tp / predicted if predicted else 0.0
        r = tp / support
        f1s.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return sum(f1s) / max(len(f1s), 1)


def make_head(spec, d, c):
    if spec["kind"] == "linear":
        return nn.Linear(d, c)
    return nn.Sequential(
        nn.Linear(d, spec["hidden"]), nn.ReLU(), nn.Dropout(spec["dropout"]), nn.Linear(spec["hidden"], c)
    )


def train(cfg, xtr, ytr, xva, yva, c, weights):
    torch.manual_seed(cfg["seed"])
    head = make_head(cfg["head"], xtr.shape[1], c)
    decay = [p for n, p in head.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in head.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"],
    )
    n, batch = len(ytr), min(cfg["batch"], len(ytr))
    steps = math.ceil(n / batch) * cfg["epochs"]
    warm = max(1, int(steps * cfg["warmup"]))

    def lr_at(s):
        if s < warm:
            return (s + 1) / warm
        t = min((s - warm) / max(steps - warm, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg["label_smoothing"])
    best, stale = (-1.0, 0, None), 0
    g = torch.Generator().manual_seed(cfg["seed"])
    for epoch in range(1, cfg["epochs"] + 1):
        head.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(head(xtr[idx]), ytr[idx])
            loss.backward()
            if cfg["clip"] > 0:
                nn.utils.clip_grad_norm_(head.parameters(), cfg["clip"])
            opt.step()
            sched.step()
        head.eval()
        with torch.inference_mode():
            pred = head(xva).argmax(1)
        f1 = macro_f1(pred, yva, c)
        if f1 > best[0]:
            best, stale = (f1, epoch, {k: v.clone() for k, v in head.state_dict().items()}), 0
        else:
            stale += 1
            if cfg["patience"] and stale >= cfg["patience"]:
                break
    return best[0], best[1], epoch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    meta = json.load(open(f"{a.work}/sweep.json"))
    d, c = meta["dim"], meta["classes"]
    xtr = torch.from_numpy(load(a.work, "train_x.f32", "<f4", d))
    ytr = torch.from_numpy(load(a.work, "train_y.u32", "<u4").astype(np.int64))
    xva = torch.from_numpy(load(a.work, "val_x.f32", "<f4", d))
    yva = torch.from_numpy(load(a.work, "val_y.u32", "<u4").astype(np.int64))
    weights = torch.tensor(meta["class_weights"], dtype=torch.float32) if meta["class_weights"] else None
    results = []
    t0 = time.perf_counter()
    for cfg in meta["runs"]:
        t = time.perf_counter()
        f1, best_epoch, epochs = train(cfg, xtr, ytr, xva, yva, c, weights)
        results.append({"val_macro_f1": f1, "best_epoch": best_epoch, "epochs_run": epochs, "seconds": time.perf_counter() - t})
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "seconds": time.perf_counter() - t0, "runs": results}))


if __name__ == "__main__":
    main()
