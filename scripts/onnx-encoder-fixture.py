"""Write crates/graft-cli/tests/fixtures/tinynet.onnx: a small convolutional feature extractor
exported by PyTorch's own ONNX exporter, the "file written by another tool" graft's
`--encoder FILE.onnx` tests take. Run once by a developer (needs torch); the file is committed.

The network is ours and untrained (seeded initialisation): three strided convolutions with
batch norm and ReLU, then global average pooling. It has two outputs, so graft must be told
which (`--output`): "conv_map" [1, 32, 8, 8] and "embedding" [1, 32]. PyTorch's default export
fixes the batch at 1 and the input at 64×64; its input is called "pixel_values", not "input".

    python scripts/onnx-encoder-fixture.py
"""

import pathlib

import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/graft-cli/tests/fixtures/tinynet.onnx"


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        for cin, cout in [(3, 16), (16, 24), (24, 32)]:
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        m = self.body(x)
        return m, m.mean(dim=(2, 3))


def main():
    torch.manual_seed(7)
    net = TinyNet()
    # Batch norm statistics other than 0/1, so folding them is exercised.
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.3)
    net.eval()
    example = torch.rand(1, 3, 64, 64)
    torch.onnx.export(
        net,
        (example,),
        str(OUT),
        input_names=["pixel_values"],
        output_names=["conv_map", "embedding"],
        opset_version=17,
        dynamo=False,
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), torch {torch.__version__}")


if __name__ == "__main__":
    main()
