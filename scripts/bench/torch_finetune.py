"""Reference for `graft bench finetune`: images/s of one fine-tuning step in PyTorch.

torchvision's MobileNetV2 with a fresh 10-class head, BatchNorm in inference mode (as graft
keeps it), every parameter trainable: forward, cross-entropy, backward, AdamW step, on random
images of the encoder's input size. Prints one JSON object on stdout.
"""

import argparse
import json
import statistics
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=a.classes)
    model.eval()  # BatchNorm uses its running statistics; gradients still flow.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up: allocations, kernel selection
    rates = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        rates.append(a.batch / (time.perf_counter() - t))
    print(json.dumps({
        "torch": torch.__version__,
        "threads": a.threads,
        "batch": a.batch,
        "steps": a.steps,
        "images_per_second": statistics.median(rates),
    }))


if __name__ == "__main__":
    main()
