"""A user's MobileNet-style network written the way users write it, once in Keras and once in torch:
`GlobalAveragePooling2D` / `AdaptiveAvgPool2d(1)` at the end, Keras' own layer names (`conv2d_1`, `re_lu`)
against torch module paths (`features.3.body.0`). bench/parity.sh measures the two side by side;
tests/test_parity.py uses the small variant.

    .venv/bin/python bench/user_models.py OUT.keras [H W C]    # writes the Keras model
    condition torch post-training-quant --model user_models:torch_net   # run from bench/
"""
from __future__ import annotations

import sys


def keras_net(input_shape: tuple[int, int, int] = (32, 32, 3), classes: int = 10, width: int = 16) -> object:
    """conv/2 → dw+pw → dw/2+pw → residual (dw, pw, Add) → GlobalAveragePooling2D → dense. Default layer names."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    L = keras.layers
    inputs = L.Input(input_shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 3, 2, "same", use_bias=False)(inputs)))
    for stride, out in ((1, 2 * width), (2, 2 * width)):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, stride, "same", use_bias=False)(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(out, 1, use_bias=False)(x)))
    y = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, 1, "same", use_bias=False)(x)))
    y = L.BatchNormalization()(L.Conv2D(2 * width, 1, use_bias=False)(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes)(x))


def torch_net(channels: int = 3, classes: int = 10, width: int = 16) -> object:
    """The Keras net's twin: the same layers, torch's padding=1 where Keras says 'same'."""
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([nn.ReLU()] if act else []))

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(conv_bn(c, c, 3, groups=c), conv_bn(c, c, 1, act=False))
            self.relu = nn.ReLU()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.relu(x + self.body(x))

    w = width
    return nn.Sequential(
        conv_bn(channels, w, 3, 2),
        conv_bn(w, w, 3, groups=w), conv_bn(w, 2 * w, 1),
        conv_bn(2 * w, 2 * w, 3, 2, groups=2 * w), conv_bn(2 * w, 2 * w, 1),
        Residual(2 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, classes),
    )


def torch_net_grey() -> object:
    """The twin for 28×28×1 images."""
    return torch_net(channels=1)


if __name__ == "__main__":
    out = sys.argv[1]
    shape = tuple(int(v) for v in sys.argv[2:5]) if len(sys.argv) >= 5 else (32, 32, 3)
    keras_net(shape).save(out)  # type: ignore[attr-defined]
    print(out)
