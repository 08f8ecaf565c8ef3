"""Training and evaluation loops shared by the float model and every fine-tuning step.

Fine-tuning takes `after_step` hooks: the constraints of earlier techniques (pruning masks,
shared cluster values) are re-applied after every optimizer step, which works the same on a
plain nn.Module and on a GraphModule from torch.export / prepare_qat_pt2e. Training without hooks
of a model whose bits cannot depend on the thread count uses all the run's cores (`thread_independent`).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from condition.datasets import Dataset
from condition.fine_tuning import BATCH_SIZE, FineTune
from condition.frontends.torch.models import input_shape_nchw, set_train_mode as _set_train

LR = 1e-3  # the seed notebook's Adam settings
StepHook = Callable[[int, int], None]  # (step, total steps)


def to_tensor(images: np.ndarray, dataset_shape: tuple[int, ...]) -> torch.Tensor:
    """uint8/float images (N, H, W[, C]) in [0, 1] → float NCHW tensor (the seed's ToTensor)."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = np.transpose(x, (0, 3, 1, 2))
    c, h, w = input_shape_nchw(dataset_shape)
    return torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, c, h, w)


def train_tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(data.x_train, data.input_shape), torch.from_numpy(data.y_train)


def test_tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(data.x_test, data.input_shape), torch.from_numpy(data.y_test)


def steps_per_epoch(data: Dataset) -> int:
    return (len(data.x_train) + BATCH_SIZE - 1) // BATCH_SIZE


def train(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    seed: int,
    after_step: Iterable[StepHook] = (),
    progress: Callable[[float], None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
    fine_tune: FineTune | None = None,
) -> nn.Module:
    """Adam, cross-entropy, shuffled mini-batches; trains `model` in place and returns it.
    `after_epoch(e)` runs after each epoch e < `epochs` (e.g. `snapshot`). A technique's fine-tuning
    passes `fine_tune`: its decaying rate and, with teacher logits, the distillation loss
    (condition/fine_tuning.py); float training passes none (Adam at 1e-3, cross-entropy)."""
    if epochs <= 0:
        return model
    hooks = list(after_step)
    with _training_threads(model if not hooks else None):
        _train_loop(model, data, epochs, seed, hooks, progress, after_epoch, fine_tune)
    recalibrate_batchnorm(model, data, seed)
    _set_train(model, False)
    return model


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                      weight: float) -> torch.Tensor:
    """(1 − α) · CE(y, s) + α · T² · KL(softmax(t/T) ‖ softmax(s/T)), batch mean (condition/fine_tuning.py)."""
    hard = nn.functional.cross_entropy(student, labels)
    soft = nn.functional.kl_div(nn.functional.log_softmax(student / temperature, dim=1),
                                nn.functional.log_softmax(teacher / temperature, dim=1), reduction="batchmean", log_target=True)
    return (1 - weight) * hard + weight * temperature ** 2 * soft


def _train_loop(model: nn.Module, data: Dataset, epochs: int, seed: int, hooks: list[StepHook],
                progress: Callable[[float], None] | None, after_epoch: Callable[[int], None] | None,
                fine_tune: FineTune | None) -> None:
    x, y = train_tensors(data)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    teacher = torch.from_numpy(fine_tune.teacher_logits) if fine_tune is not None and fine_tune.distilling else None
    if teacher is not None and len(teacher) != len(x):
        raise RuntimeError(f"teacher logits for {len(teacher)} images, {len(x)} training images")  # a bug, not user input
    total = epochs * steps_per_epoch(data)
    step = 0
    _set_train(model, True)
    for epoch in range(epochs):
        if epoch and after_epoch is not None:
            after_epoch(epoch)
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad()
            if fine_tune is not None:
                for group in opt.param_groups:
                    group["lr"] = fine_tune.learning_rate(step, total)
            if teacher is not None:
                loss = distillation_loss(model(x[idx]), teacher[idx], y[idx], fine_tune.temperature, fine_tune.distill_weight)
            else:
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
            with torch.no_grad():
                for hook in hooks:
                    hook(step, total)
            if progress is not None and step % 20 == 0:
                progress(step / total)


# ---- training on all cores where the thread count cannot change the bits (condition/threads.py) ----

_THREAD_FREE_MODULES = (nn.Linear, nn.ReLU, nn.Flatten, nn.Identity)  # MKL GEMMs and element-wise ops
_THREAD_FREE_FUNCTIONS = frozenset({torch.flatten, torch.relu, torch.nn.functional.relu, torch.reshape})
_THREAD_FREE_METHODS = frozenset({"view", "reshape", "flatten", "relu", "size"})


def thread_independent(model: nn.Module) -> bool:
    """Whether training `model` gives the same bits at any thread count: its traced forward holds only
    Linear, ReLU, flatten and reshapes (MKL GEMMs in strict CNR mode and element-wise ops; the loss
    and Adam work per row and per element), and no module has hooks or parametrizations. Anything
    else, a graph module or a forward torch.fx cannot trace, trains on one thread."""
    if isinstance(model, torch.fx.GraphModule):
        return False
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or hasattr(m, "parametrizations"):
            return False
        if not any(True for _ in m.children()) and not isinstance(m, _THREAD_FREE_MODULES):
            return False
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 — control flow on tensors and the like: not known to be thread-free
        return False
    for node in graph.nodes:
        if node.op == "call_module" and not isinstance(model.get_submodule(node.target), _THREAD_FREE_MODULES):
            return False
        if node.op == "call_function" and node.target not in _THREAD_FREE_FUNCTIONS:
            return False
        if node.op == "call_method" and node.target not in _THREAD_FREE_METHODS:
            return False
    return True


def mkl_strict() -> bool:
    """Whether torch's MKL computes in strict CNR mode: asked of MKL itself (mkl_cbwr_get), which read
    MKL_CBWR when it started; an MKL that cannot be asked counts as not strict."""
    import ctypes
    import os

    try:
        get = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return False
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    return bool(get(-1) & 0x10000)  # MKL_CBWR_ALL, MKL_CBWR_STRICT


@contextlib.contextmanager
def _training_threads(model: nn.Module | None):
    """All the run's cores while `model` trains, when MKL is in strict mode and the model is
    thread-independent; otherwise the threads stay as pinned (COMPUTE_THREADS)."""
    from condition.threads import run_cores

    pinned = torch.get_num_threads()
    cores = run_cores()
    if model is None or cores <= pinned or not mkl_strict() or not thread_independent(model):
        yield
        return
    torch.set_num_threads(cores)
    try:
        yield
    finally:
        torch.set_num_threads(pinned)


def snapshot(model: nn.Module, data: Dataset, seed: int) -> nn.Module:
    """A copy of `model` in the middle of `train`, finished as `train` finishes (BatchNorm
    statistics re-estimated, eval mode); the global RNG is left as it was, so training goes on
    exactly as without the copy: after epoch e of an E-epoch training it is the e-epoch model (the
    same seeded batch order, the same optimizer state), checked in tests/test_float_snapshots.py."""
    import copy

    state = torch.get_rng_state()
    try:
        finished = copy.deepcopy(model)
        recalibrate_batchnorm(finished, data, seed)
        _set_train(finished, False)
    finally:
        torch.set_rng_state(state)
    return finished


# ---- BatchNorm statistics, treated as on the tf side (frontends/tf/train.py) ------------------

BN_RECALIBRATION_IMAGES = 2048  # the same count, images and batch size as the tf side
BATCHNORM_NOTE = ("BatchNorm statistics re-estimated after each training step: mean of the per-batch statistics "
                  "over {images} training images in training mode, no weight updates")
# batch_norm ops of an exported graph (.pt2, PT2E/QAT): args (x, w, b, running_mean, running_var, training, momentum, eps)
_BN_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit.default")


def batchnorm_note(model: nn.Module, trained: bool, train_images: int) -> str | None:
    """The record's note when training ran on a model with BatchNorm (then every training step
    re-estimated its statistics); None otherwise, e.g. a user's model with --epochs 0."""
    if not trained or not batchnorm_statistics(model):
        return None
    return BATCHNORM_NOTE.format(images=min(BN_RECALIBRATION_IMAGES, train_images))


def batchnorm_statistics(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(running mean, running var, update factor) of every BatchNorm that tracks statistics: the
    modules of an nn.Module, or the batch_norm ops of an exported GraphModule (PT2E and QAT
    graphs have no BatchNorm modules; their statistics are buffers the op updates in place)."""
    found: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            factor = m.momentum if m.momentum is not None else 1.0 / (int(m.num_batches_tracked) + 1)
            found[id(m.running_mean)] = (m.running_mean, m.running_var, factor)
    if isinstance(model, torch.fx.GraphModule):
        for node in model.graph.nodes:
            if node.op != "call_function" or str(node.target) not in _BN_OPS:
                continue
            mean, var = node.args[3], node.args[4]
            if getattr(mean, "op", None) == "get_attr" and getattr(var, "op", None) == "get_attr":
                momentum = node.args[6] if len(node.args) > 6 else node.kwargs.get("momentum", 0.1)
                running_mean, running_var = _attribute(model, mean.target), _attribute(model, var.target)
                found[id(running_mean)] = (running_mean, running_var, float(momentum))
    return list(found.values())


def _attribute(model: nn.Module, target: str) -> torch.Tensor:
    obj = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def recalibrate_batchnorm(model: nn.Module, data: Dataset, seed: int) -> int:
    """Replace every BatchNorm's running statistics by the mean of its batch statistics over
    `BN_RECALIBRATION_IMAGES` seeded training images, run in training mode without weight updates
    (torch.optim.swa_utils.update_bn's cumulative average, also on exported graphs).

    Why: the same procedure as the tf side, whose Keras moving averages lag short training;
    each batch's statistics are read back from the op's own update (new = (1-f)·old + f·batch),
    and every parameter and buffer (observers, fake-quant ranges, counters) is restored after
    each batch. Returns the number of images used (0 without BatchNorm).
    """
    norms = [n for n in batchnorm_statistics(model) if n[2] > 0]  # momentum 0: statistics frozen on purpose
    if not norms:
        return 0
    rng = np.random.default_rng(seed)  # the tf side's TrainData.calibration: same images
    idx = np.sort(rng.choice(len(data.x_train), size=min(BN_RECALIBRATION_IMAGES, len(data.x_train)), replace=False))
    images = to_tensor(data.x_train[idx], data.input_shape)
    live = model.state_dict(keep_vars=True)
    saved = {name: t.detach().clone() for name, t in live.items()}
    old = [(mean.clone(), var.clone()) for mean, var, _ in norms]
    sums = [(torch.zeros_like(mean), torch.zeros_like(var)) for mean, var, _ in norms]
    batches = torch.tensor_split(images, max(len(images) // BATCH_SIZE, 1))
    _set_train(model, True)
    with torch.no_grad():
        for batch in batches:
            model(batch)
            for (mean, var, f), (old_mean, old_var), (mean_sum, var_sum) in zip(norms, old, sums):
                mean_sum += (mean - (1 - f) * old_mean) / f
                var_sum += (var - (1 - f) * old_var) / f
                mean.copy_(old_mean)
                var.copy_(old_var)
            for name, tensor in live.items():  # observers, fake-quant ranges, batch counters
                if tensor.shape == saved[name].shape:
                    tensor.data.copy_(saved[name])
                else:  # an observer that sized itself on this batch
                    tensor.data = saved[name].clone()
        for (mean, var, _), (mean_sum, var_sum) in zip(norms, sums):
            mean.copy_(mean_sum / len(batches))
            var.copy_(var_sum / len(batches))
    return len(images)


def predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> np.ndarray:
    """Class indices for every image, evaluated in batches without gradients."""
    _set_train(model, False)
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(model(x[start:start + batch]).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, data: Dataset) -> float:
    x, y = test_tensors(data)
    return float((predict(model, x) == y.numpy()).mean())


def train_logits(model: nn.Module, data: Dataset) -> np.ndarray:
    """The model's logits for every training image, in the data set's order (a distillation teacher's)."""
    x, _ = train_tensors(data)
    _set_train(model, False)  # the trained float model is in inference mode already; a .pt2 graph too
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 1024]) for i in range(0, len(x), 1024)])
    return out.numpy().astype(np.float32)
