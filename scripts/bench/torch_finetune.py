"""Reference for `graft bench finetune`: images/s of one fine-tuning step in PyTorch.

torchvision's MobileNetV2 with a fresh 10-class head, BatchNorm in inference mode (as graft
keeps it), every parameter trainable: forward, cross-entropy, backward, AdamW step, on random
images of the encoder's input size. With --precision bf16 the forward runs under autocast
(bfloat16 convolutions, f32 weights and optimizer), as graft's mixed precision does. With
--device cuda it runs on GPU 0 and waits for the GPU before each clock reading. Prints one
JSON object on stdout.
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
    p.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=a.classes)
    model.eval()  # BatchNorm uses its running statistics; gradients still flow.
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    autocast = torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up: allocations, kernel selection
    sync()
    rates = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        sync()
        rates.append(a.batch / (time.perf_counter() - t))
    print(json.dumps({
        "torch": torch.__version__,
        "threads": a.threads,
        "device": a.device,
        "precision": a.precision,
        "batch": a.batch,
        "steps": a.steps,
        "images_per_second": statistics.median(rates),
    }))


if __name__ == "__main__":
    main()
