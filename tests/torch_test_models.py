"""Factories for the torch tests' `--model package.module:factory` (tests/ is on sys.path)."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class WithCpuOp(Tiny):
    """Sorted class scores: the Ethos-U partitioner leaves `sort` on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).sort(dim=1).values


def tiny() -> nn.Module:
    return Tiny()


def with_cpu_op() -> nn.Module:
    return WithCpuOp()


def raises() -> nn.Module:
    raise ValueError("no weights here")


def not_a_module() -> int:
    return 3


class BnCnn(nn.Module):
    """The layer kinds of DS-CNN / MobileNet in a few thousand weights: conv+BN+ReLU stem (one input
    channel), depthwise+BN+ReLU, 1x1 conv+BN added back to the stem's output, 1x1 conv+BN+ReLU6,
    global average pooling, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.dw, self.dw_bn = nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32)
        self.pw, self.pw_bn = nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.head, self.head_bn = nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = x + self.pw_bn(self.pw(torch.relu(self.dw_bn(self.dw(x)))))
        x = torch.nn.functional.relu6(self.head_bn(self.head(x)))
        # average pooling as the built-ins do it (the Ethos-U quantizer cannot calibrate a mean over
        # dims of a dynamic-batch graph: it reshapes with an unbound batch size)
        return self.fc(torch.flatten(torch.nn.functional.avg_pool2d(x, x.shape[-2:]), 1))


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    return BnCnn()
