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
