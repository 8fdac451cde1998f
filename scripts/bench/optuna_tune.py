"""Reference for `graft bench tune`: the same Bayesian search written the way a PyTorch user
would — Optuna's TPE sampler driving the PyTorch head of torch_heads.py (same architecture,
AdamW, warmup + cosine, label smoothing, clipping, early stopping on val macro-F1) over the
same search space and the same standardised feature rows graft wrote. Trials run one after
the other, torch using every thread it is given. Prints one JSON line.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_heads import load, train  # noqa: E402

import optuna  # noqa: E402


def suggest(trial, name, dist):
    (kind, arg), = dist.items()
    if kind == "log":
        return trial.suggest_float(name, arg[0], arg[1], log=True)
    if kind == "uniform":
        return trial.suggest_float(name, arg[0], arg[1])
    if kind == "int":
        return trial.suggest_int(name, arg[0], arg[1])
    if kind == "choice":
        return trial.suggest_categorical(name, arg)
    raise ValueError(f"unknown distribution {kind} for {name}")


def configure(base, params):
    cfg = json.loads(json.dumps(base))
    head = params.get("head")
    if head is not None:
        cfg["head"] = {"kind": "linear"} if head == "linear" else {"kind": "mlp", "hidden": 256, "dropout": 0.2}
    for name, value in params.items():
        if name in ("hidden", "dropout"):
            if cfg["head"]["kind"] == "mlp":
                cfg["head"][name] = value
        elif name != "head":
            cfg[name] = value
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    meta = json.load(open(f"{a.work}/search.json"))
    d, c = meta["dim"], meta["classes"]
    xtr = torch.from_numpy(load(a.work, "train_x.f32", "<f4", d))
    ytr = torch.from_numpy(load(a.work, "train_y.u32", "<u4").astype(np.int64))
    xva = torch.from_numpy(load(a.work, "val_x.f32", "<f4", d))
    yva = torch.from_numpy(load(a.work, "val_y.u32", "<u4").astype(np.int64))
    weights = torch.tensor(meta["class_weights"], dtype=torch.float32) if meta["class_weights"] else None

    def objective(trial):
        params = {name: suggest(trial, name, dist) for name, dist in meta["space"].items()}
        f1, _, _ = train(configure(meta["base"], params), xtr, ytr, xva, yva, c, weights)
        return f1

    sampler = optuna.samplers.TPESampler(seed=meta["seed"], n_startup_trials=meta["startup"])
    study = optuna.create_study(direction="maximize", sampler=sampler)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=meta["trials"])
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "optuna": optuna.__version__,
        "torch": torch.__version__,
        "threads": a.threads,
        "seconds": seconds,
        "trials": len(study.trials),
        "best_value": study.best_value,
        "best_params": study.best_params,
    }))


if __name__ == "__main__":
    main()
