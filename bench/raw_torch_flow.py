"""The seed notebook's torch flow written with the raw libraries only (no `condition` import): the
yardstick `condition torch post-training-quant` is timed against (the target: within 1.3x of it).

Fashion-MNIST from the Debian IDX files → MLP 784-512-256-10, Adam 1e-3, batch 128, 1 epoch →
torch.export → PT2E with the EthosUQuantizer (symmetric, 200 calibration images) → fake-quant
accuracy on the 10,000 test images → static batch-1 export → to_edge_transform_and_lower with the
EthosUPartitioner (U85-128, Vela) → .pte. Prints one JSON line of step seconds; the framework's
default thread count, as a user's script would have.

    .venv/bin/python bench/raw_torch_flow.py OUT_DIR
"""
from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

START = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

DATA = Path("/usr/share/datasets/fashion-mnist")
seconds: dict[str, float] = {"imports": 0.0}
_mark = [time.perf_counter()]


def step(name: str) -> None:
    now = time.perf_counter()
    seconds[name] = round(now - _mark[0], 3)
    _mark[0] = now


def idx(name: str) -> np.ndarray:
    raw = gzip.open(DATA / name).read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main(out: Path) -> None:
    from executorch.backends.arm.ethosu import EthosUCompileSpec, EthosUPartitioner
    from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.extension.export_util.utils import save_pte_program
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    import executorch.kernels.quantized  # noqa: F401

    seconds["imports"] = round(time.perf_counter() - START, 3)
    _mark[0] = time.perf_counter()
    x_train = torch.from_numpy(idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    y_train = torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    x_test = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    y_test = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    step("load data")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))
    model.train()
    for s in range(0, len(x_train), 128):
        idx_ = order[s:s + 128]
        opt.zero_grad()
        loss_fn(model(x_train[idx_]), y_train[idx_]).backward()
        opt.step()
    model.eval()
    step("train float")

    spec = EthosUCompileSpec("ethos-u85-128", system_config="Ethos_U85_SYS_DRAM_Mid", memory_mode="Shared_Sram")
    quantizer = EthosUQuantizer(spec)
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    example = (torch.zeros(1, 1, 28, 28),)
    batch = torch.export.Dim("batch", min=1, max=4096)  # calibration and fake-quant run whole batches
    graph = torch.export.export(model, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(graph, quantizer)
    calibration = x_train[np.sort(np.random.default_rng(0).choice(len(x_train), 200, replace=False))]
    with torch.no_grad():
        for s in range(0, 200, 50):
            prepared(calibration[s:s + 50])
    converted = convert_pt2e(prepared)
    step("post-training-quant")

    with torch.no_grad():
        preds = torch.cat([converted(x_test[s:s + 500]).argmax(1) for s in range(0, len(x_test), 500)])
    fake_quant = float((preds == y_test).float().mean())
    step("fake-quant accuracy")

    out.mkdir(parents=True, exist_ok=True)
    static = torch.export.export(converted, example)
    edge = to_edge_transform_and_lower(static, partitioner=[EthosUPartitioner(spec)],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    program = edge.to_executorch(config=ExecutorchBackendConfig(extract_delegate_segments=False))
    save_pte_program(program, str(out / "model.pte"), str(out))
    step("lower to .pte")
    seconds["total"] = round(time.perf_counter() - START, 3)
    print(json.dumps({"fake_quant_accuracy": fake_quant, "threads": torch.get_num_threads(), "step_seconds": seconds}))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/condition-raw-torch"))
