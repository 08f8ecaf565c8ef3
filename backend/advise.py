"""Which technique will pay on this model and this NPU, judged per layer from Vela's figures for
the dense int8 model compiled for every MAC size of its NPU family (the seed notebook's judgement,
and Arm's practical test: if cycles barely fall with more MACs, the weights are the bottleneck).

Per layer, at the Target: the time is the slowest of three things Vela estimates — NPU compute
(MAC array, output unit, commands), weight traffic (fetching weights and scales from their memory,
and the weight decoder), feature-map traffic. The layer is MAC-, weight- or memory-bound by which
one is the slowest. The MAC sweep is shown beside it as evidence but does not decide: measured on
the seed MLP, a pruned FC layer is compute-bound and still does not speed up with more MACs (at
batch 1 it fills 2–3 % of the array), and the larger U85 configurations also fetch faster, so the
dense, weight-bound MLP does speed up there. The technique bounds apply stated rules (RULES) to the
same per-layer figures; every number is a Vela-based estimate, a best case, not a measurement.
No framework is imported here.

    advice = advise(compile_family(model, target, out), target, artifact={"path": str(model)})
    print(advice.verdict)
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from condition.backend.target import Target
from condition.backend.vela_sweep import VelaCompile, VelaLayer
from condition.techniques import DEFAULT_CHANNEL_SPARSITY, IMAGE_CHANNELS
from condition.errors import ArtifactError

ADVICE_VERSION = 1
ADVICE_NAME = "advice.json"
DEFAULT_SPARSITY = 0.95
DEFAULT_CLUSTERS = 16

# The documented rule factors; every bound comes from these and the measured rows.
TWO_FOUR_FACTOR = 0.5  # U85: the MAC array skips 2 of every 4 weights, half the MAC work
# The sparse format keeps the 2 values of every 4 and where they sit: 2 × 8 + 2 × 2 bits of 32. Vela's encoded
# weights of the seed MLP measured 0.624× dense with 2:4 (336,464 of 539,184 B); a plain half undershot it by 25 %.
TWO_FOUR_WEIGHT_FACTOR = 20 / 32
PALETTE_MAX = 32  # Vela's weight codec palette: up to 32 distinct non-zero values
TWO_FOUR_OPS = ("Conv2D", "FullyConnected", "MatMul")  # weights Vela can give the sparse format (never depthwise)

RULES: dict[str, str] = {
    "classification": "a layer is weight-bound when fetching or decoding its weights takes longer than its NPU compute "
                      "and its feature-map traffic, memory-bound when feature-map traffic is the longest, MAC-bound when "
                      "NPU compute is (ties: MAC-bound)",
    "sweep": "the same model compiled for every MAC size of the family; cycles that barely fall with more MACs point at "
             "weights or memory (shown as evidence; the breakdown decides)",
    "prune": "weight traffic scales with the non-zero weights: a layer's cycles fall to max(NPU compute, feature-map "
             "traffic, weight cycles × (1 − sparsity)); encoded weights × (1 − sparsity); layers the pruning policy keeps dense "
             "(image stem, depthwise, classifier, small layers: named per layer when the model's record is known) unchanged",
    "2:4": f"U85 only, Conv/FC layers whose input channels are a multiple of 4 (not depthwise): NPU compute × {TWO_FOUR_FACTOR} "
           f"(the MAC array skips the zeros), weight cycles and encoded weights × {TWO_FOUR_WEIGHT_FACTOR:.3g} (the sparse format "
           "keeps 2 values of 8 bits and 2 positions of 2 bits per 4 weights); other layers unchanged",
    "2:4 + prune": f"2:4 with pruning inside the pattern up to the sparsity: eligible layers' NPU compute × {TWO_FOUR_FACTOR} and "
                   "weights × (1 − sparsity); other layers as prune",
    "cluster": f"Vela's palette codes k ≤ {PALETTE_MAX} shared values in about log2(k) bits instead of 8: weight cycles and "
               "encoded weights × log2(k)/8; cycles fall only where a layer is weight-bound",
    "channel-prune": "removing a share S of every layer's output channels (and the next layer's matching inputs): a "
                     "Conv/FC layer's NPU compute and weights × (1 − S)² (× (1 − S) for an image stem, whose inputs stay, "
                     "and for the classifier, whose outputs stay), a depthwise or weightless op's × (1 − S), feature-map "
                     "traffic × the mean of its input and output factors; MAC-bound layers gain most, and it is the only "
                     "technique here that lowers MAC cycles on U55 and U65 (granule rounding not counted)",
    "estimate": "every bound is a Vela-based estimate from these per-layer rows: a best case, not a measurement",
}
BOUND_LABELS = {"weight": "weight-bound", "memory": "memory-bound", "mac": "MAC-bound"}


@dataclass(frozen=True)
class LayerAdvice:
    """One NPU layer at the Target: what sets its time, and what the techniques can touch."""

    name: str
    operator: str
    bound: str  # "weight" | "memory" | "mac"
    share: float  # of the model's cycles
    op_cycles: int
    npu_cycles: int  # compute
    weight_cycles: int  # weight fetch / decode, whichever is slower
    feature_map_cycles: int
    weight_bytes: int | None  # NPU-encoded
    weight_format: str
    ifm_channels: int | None
    two_four_eligible: bool | None  # None: not a U85 (no sparse MAC array) or unknown
    two_four_reason: str
    sweep_cycles: dict[str, int]  # accelerator → op cycles of this layer
    more_macs_ratio: float | None  # op cycles at the next larger MAC size / at the Target
    evidence: str
    source: str = "estimate"
    prune_left_out: str | None = None  # why the pruning policy keeps this layer dense; "" = pruned; None = unknown


@dataclass(frozen=True)
class TechniqueBound:
    """What one technique can give at best on this model and NPU (a Vela-based estimate)."""

    technique: str  # "prune" | "2:4" | "2:4 + prune" | "cluster"
    label: str
    parameters: dict[str, Any]
    applicable: bool
    total_cycles: int
    cycles_vs_dense: float
    encoded_weight_bytes: int
    weights_vs_dense: float
    layers_helped: list[str]
    rule: str
    note: str = ""
    source: str = "estimate"


@dataclass(frozen=True)
class Advice:
    target: dict[str, Any]
    family: str
    artifact: dict[str, Any]
    dense: dict[str, int]  # total_cycles, npu_cycles, encoded_weight_bytes, original_weight_bytes at the Target
    sweep: list[dict[str, Any]]  # per MAC size: accelerator, macs, total/npu cycles, encoded weight bytes
    bound: str
    verdict: str
    layers: list[LayerAdvice]
    techniques: list[TechniqueBound]
    parameters: dict[str, Any]
    rules: dict[str, str] = field(default_factory=lambda: dict(RULES))
    breakdown: bool = True  # False: only the per-layer CSV was there (no debug database)
    versions: dict[str, str] = field(default_factory=dict)
    rewrites: list[str] = field(default_factory=list)  # export rewrites the file would gain from (backend/lowering_advice.py)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    source: str = "estimate"
    advice_version: int = ADVICE_VERSION

    def technique(self, name: str) -> TechniqueBound | None:
        return next((t for t in self.techniques if t.technique == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Advice":
        if d.get("advice_version") != ADVICE_VERSION:
            raise ValueError(f"advice_version {d.get('advice_version')!r}, expected {ADVICE_VERSION}")
        d = dict(d)
        d["layers"] = [LayerAdvice(**l) for l in d["layers"]]
        d["techniques"] = [TechniqueBound(**t) for t in d["techniques"]]
        return cls(**d)

    def write(self, path: str | Path) -> Path:
        from condition.backend.atomic import write_json_atomic

        return write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> "Advice":
        from condition.backend.metrics import read_document

        return read_document(Path(path), cls.from_dict, "advice file")


# ---- per layer -------------------------------------------------------------------------------

def components(layer: VelaLayer) -> tuple[int, int, int]:
    """(NPU compute, weight, feature-map) cycles of a layer. Without Vela's debug database the
    memory cycles of a layer with MACs are counted as weight traffic (an FC/Conv's usual case)."""
    if layer.weight_access_cycles is not None:
        weight = max(layer.weight_access_cycles, layer.wd_cycles or 0)
        return layer.npu_cycles, weight, layer.feature_map_access_cycles or 0
    if layer.mac_count:
        return layer.npu_cycles, layer.memory_cycles, 0
    return layer.npu_cycles, 0, layer.memory_cycles


def classify(layer: VelaLayer) -> str:
    compute, weight, fmap = components(layer)
    if compute >= max(weight, fmap):
        return "mac"
    return "weight" if weight >= fmap else "memory"


def two_four(layer: VelaLayer, family: str) -> tuple[bool | None, str]:
    """Whether Vela can give this layer's weights the 2:4 sparse format (U85 Conv/FC, input
    channels a multiple of 4, not depthwise)."""
    if family != "u85":
        return None, "U85 only"
    if "depthwise" in layer.operator.lower():
        return False, "depthwise"
    if layer.operator not in TWO_FOUR_OPS:
        return False, f"{layer.operator} has no sparse weight format"
    if layer.weight_bytes == 0:
        return False, "no constant weights"
    if layer.ifm_channels is None:
        return None, "input channels unknown (no debug database)"
    if layer.ifm_channels % 4:
        return False, f"{layer.ifm_channels} input channels, not a multiple of 4"
    return True, f"{layer.ifm_channels} input channels"


def _key_list(layers: Sequence[VelaLayer]) -> list[tuple[str, str, int]]:
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for l in layers:
        n = seen.get((l.name, l.operator), 0)
        seen[(l.name, l.operator)] = n + 1
        keys.append((l.name, l.operator, n))
    return keys


def _npu_layers(c: VelaCompile) -> list[tuple[tuple[str, str, int], VelaLayer]]:
    """Layers that take NPU time (fused activations have 0 cycles and no row of their own)."""
    return [(k, l) for k, l in zip(_key_list(c.layers), c.layers) if l.target == "NPU" and l.op_cycles > 0]


def _evidence(layer: VelaLayer, bound: str, ratio: float | None, step: str) -> str:
    compute, weight, fmap = components(layer)
    parts = [f"NPU compute {compute:,}", f"weights {weight:,}", f"feature maps {fmap:,} cycles"]
    text = ", ".join(parts)
    if ratio is not None:
        text += f"; {step}: cycles ×{ratio:.2f}"
    if bound == "mac" and ratio is not None and ratio > 0.9 and layer.mac_util_pct < 25:
        text += f" (MAC array {layer.mac_util_pct:.0f} % used: more MACs do not help)"
    return text


def policy_of(name: str, left_out: dict[str, str] | None) -> str | None:
    """The policy's word on a Vela layer: by its name, else by the longest weighted layer's name it
    starts with (a fused activation's output, e.g. block1_pw_relu for block1_pw); None = unknown."""
    if not left_out:
        return None
    if name in left_out:
        return left_out[name]
    prefixes = [n for n in left_out if name.startswith(n + "_") or name.startswith(n + "/")]
    return left_out[max(prefixes, key=len)] if prefixes else None


# ---- the techniques --------------------------------------------------------------------------

def _cluster_factor(clusters: int) -> float:
    return min(1.0, math.log2(clusters) / 8) if 2 <= clusters <= PALETTE_MAX else 1.0


def channel_factors(layer: LayerAdvice, keep: float, classifier: bool, outside: bool) -> tuple[float, float]:
    """(input, output) channel factors of `layer` when every prunable layer keeps `keep` of its output channels;
    `outside`: before the first weighted layer (on the image) or after the classifier (on the class scores)."""
    if outside:
        return 1.0, 1.0
    out_f = 1.0 if classifier else keep
    if not layer.weight_bytes or "depthwise" in layer.operator.lower():
        return 1.0, out_f  # carries its input's channels: one factor
    reads_image = layer.ifm_channels is not None and layer.ifm_channels <= IMAGE_CHANNELS
    return (1.0 if reads_image else keep), out_f


def layer_bound(layer: LayerAdvice, technique: str, sparsity: float, clusters: int,
                channel_factor: tuple[float, float] = (1.0, 1.0)) -> tuple[int, int | None]:
    """(cycles, encoded weight bytes) of one layer at best after `technique` (the RULES); `channel_factor`:
    channel-prune's (input, output) factors of this layer (`channel_factors`)."""
    compute, weight, fmap, op = layer.npu_cycles, layer.weight_cycles, layer.feature_map_cycles, layer.op_cycles
    wbytes = layer.weight_bytes
    eligible = bool(layer.two_four_eligible)
    if technique == "channel-prune":
        in_f, out_f = channel_factor
        factor = in_f * out_f
        cycles = min(op, max(round(compute * factor), round(fmap * (in_f + out_f) / 2), round(weight * factor)))
        return cycles, (round(wbytes * factor) if wbytes is not None else None)
    if technique == "prune":  # a layer the pruning policy keeps dense keeps its weights
        mac_f, weight_f = 1.0, 1.0 if layer.prune_left_out else 1.0 - sparsity
    elif technique == "2:4":
        mac_f, weight_f = (TWO_FOUR_FACTOR, TWO_FOUR_WEIGHT_FACTOR) if eligible else (1.0, 1.0)
    elif technique == "2:4 + prune":
        mac_f, weight_f = (TWO_FOUR_FACTOR if eligible else 1.0), 1.0 - sparsity
    elif technique == "cluster":
        mac_f, weight_f = 1.0, _cluster_factor(clusters)
    else:
        raise ValueError(technique)
    cycles = min(op, max(round(compute * mac_f), fmap, round(weight * weight_f)))
    return cycles, (round(wbytes * weight_f) if wbytes is not None else None)


TECHNIQUES = ("prune", "2:4", "2:4 + prune", "cluster", "channel-prune")


def technique_bound(advice_layers: Sequence[LayerAdvice], family: str, technique: str, dense: dict[str, int],
                    sparsity: float = DEFAULT_SPARSITY, clusters: int = DEFAULT_CLUSTERS,
                    channel_sparsity: float = DEFAULT_CHANNEL_SPARSITY) -> TechniqueBound:
    """The best case of `technique` on these layers (also used by the compare report to recompute
    the bound at the parameters a cell actually ran with)."""
    cycles, wbytes, helped = 0, 0, []
    weighted = [i for i, l in enumerate(advice_layers) if l.weight_bytes]
    first, last = (weighted[0], weighted[-1]) if weighted else (0, len(advice_layers))
    for i, l in enumerate(advice_layers):
        factor = (channel_factors(l, 1.0 - channel_sparsity, i == last, not first <= i <= last) if technique == "channel-prune"
                  else (1.0, 1.0))
        c, b = layer_bound(l, technique, sparsity, clusters, factor)
        cycles += c
        wbytes += b if b is not None else (l.weight_bytes or 0)
        if c < l.op_cycles * 0.97:
            helped.append(l.name)
    other = dense["total_cycles"] - sum(l.op_cycles for l in advice_layers)  # CPU-side or unattributed cycles
    cycles += max(other, 0)
    if not any(l.weight_bytes is not None for l in advice_layers):
        wbytes = dense["encoded_weight_bytes"]
    applicable, note = True, ""
    if technique in ("2:4", "2:4 + prune") and family != "u85":
        applicable, note = False, "U85 only: on U55/U65 a 2:4 model is a 50 % pruned model (see prune)"
        cycles, wbytes, helped = dense["total_cycles"], dense["encoded_weight_bytes"], []
    elif technique.startswith("2:4") and not any(l.two_four_eligible for l in advice_layers):
        note = "no layer can take the 2:4 sparse format"
    kept = [l.name for l in advice_layers if l.prune_left_out]
    if technique == "prune" and kept:
        note = "kept dense by the pruning policy: " + ", ".join(dict.fromkeys(kept))
    if technique == "cluster" and _cluster_factor(clusters) >= 1.0:
        note = f"{clusters} clusters: outside Vela's palette (2–{PALETTE_MAX} values), no gain expected"
    if technique == "channel-prune":
        mac = [l.name for l in advice_layers if l.bound == "mac" and l.name in helped]
        note = ("fewer MACs in the MAC-bound layers " + ", ".join(dict.fromkeys(mac)) if mac
                else "no MAC-bound layer: fewer channels mostly shrink weights and feature maps here")
    label = {"prune": f"prune {sparsity:.0%}", "2:4": "2:4", "2:4 + prune": f"2:4 + prune {sparsity:.0%}",
             "cluster": f"cluster {clusters}", "channel-prune": f"channel-prune {channel_sparsity:.0%}"}[technique]
    params = ({"channel_sparsity": channel_sparsity} if technique == "channel-prune" else {"sparsity": sparsity} if "prune" in technique
              else ({"clusters": clusters} if technique == "cluster" else {}))
    return TechniqueBound(
        technique=technique, label=label, parameters=params, applicable=applicable,
        total_cycles=int(cycles), cycles_vs_dense=cycles / dense["total_cycles"] if dense["total_cycles"] else 1.0,
        encoded_weight_bytes=int(wbytes), weights_vs_dense=wbytes / dense["encoded_weight_bytes"] if dense["encoded_weight_bytes"] else 1.0,
        layers_helped=helped, rule=RULES[technique], note=note,
    )


# ---- the whole model -------------------------------------------------------------------------

def advise(compiles: Sequence[VelaCompile], target: Target, artifact: dict[str, Any] | None = None,
           sparsity: float = DEFAULT_SPARSITY, clusters: int = DEFAULT_CLUSTERS, versions: dict[str, str] | None = None,
           prune_left_out: dict[str, str] | None = None) -> Advice:
    """Classify the Target's layers, rank the techniques; `compiles` holds the Target's compile and
    (for the sweep) the other MAC sizes of its family. `prune_left_out`: weighted layer name → why
    the pruning policy keeps it dense ("" = pruned), so the prune bounds count only what pruning
    touches; without it every layer is assumed pruned (an artifact with no record)."""
    compiles = [c for c in compiles if c.accelerator.split("-")[1:2] == [target.family]]  # the sweep stays in the family
    by_acc = {c.accelerator: c for c in compiles}
    at = by_acc.get(target.npu)
    if at is None:
        raise ArtifactError(", ".join(c.folder for c in compiles) or "(nothing)", f"no Vela figures for {target.npu}")
    sizes = sorted(compiles, key=lambda c: c.macs)
    bigger = next((c for c in sizes if c.macs > at.macs), None)
    sweeps = {c.accelerator: dict(_npu_layers(c)) for c in sizes}
    rows = _npu_layers(at)
    total = sum(l.op_cycles for _, l in rows) or 1
    layers = []
    for key, l in rows:
        bound = classify(l)
        sweep = {acc: s[key].op_cycles for acc, s in sweeps.items() if key in s}
        ratio = sweep[bigger.accelerator] / l.op_cycles if bigger and bigger.accelerator in sweep else None
        step = f"{at.macs}→{bigger.macs} MACs" if bigger else ""
        eligible, reason = two_four(l, target.family)
        compute, weight, fmap = components(l)
        layers.append(LayerAdvice(
            name=l.name, operator=l.operator, bound=bound, share=l.op_cycles / total, op_cycles=l.op_cycles,
            npu_cycles=compute, weight_cycles=weight, feature_map_cycles=fmap, weight_bytes=l.weight_bytes,
            weight_format=l.weight_format, ifm_channels=l.ifm_channels, two_four_eligible=eligible, two_four_reason=reason,
            sweep_cycles=sweep, more_macs_ratio=ratio, evidence=_evidence(l, bound, ratio, step),
            prune_left_out=policy_of(l.name, prune_left_out) if l.weight_bytes else None,
        ))
    dense = {"total_cycles": at.total_cycles, "npu_cycles": at.npu_cycles,
             "encoded_weight_bytes": at.encoded_weight_bytes, "original_weight_bytes": at.original_weight_bytes}
    bounds = [technique_bound(layers, target.family, t, dense, sparsity, clusters) for t in TECHNIQUES]
    bounds.sort(key=lambda b: (not b.applicable, b.total_cycles, b.encoded_weight_bytes))
    shares = {b: sum(l.share for l in layers if l.bound == b) for b in BOUND_LABELS}
    model_bound = max(shares, key=lambda b: (shares[b], b == "mac"))
    return Advice(
        target=target.as_dict(), family=target.family, artifact=dict(artifact or {}), dense=dense,
        sweep=[{"accelerator": c.accelerator, "macs": c.macs, "total_cycles": c.total_cycles, "npu_cycles": c.npu_cycles,
                "encoded_weight_bytes": c.encoded_weight_bytes} for c in sizes],
        bound=model_bound, verdict=verdict(model_bound, shares, dense, bounds, sizes, at),
        layers=layers, techniques=bounds, parameters={"sparsity": sparsity, "clusters": clusters},
        breakdown=at.has_breakdown, versions=dict(versions or {}),
    )


def verdict(bound: str, shares: dict[str, float], dense: dict[str, int], bounds: list[TechniqueBound],
            sizes: list[VelaCompile], at: VelaCompile) -> str:
    """One paragraph a user reads first."""
    total = dense["total_cycles"]
    text = (f"{BOUND_LABELS[bound]}: {shares[bound]:.0%} of the {total:,} cycles are in {BOUND_LABELS[bound]} layers "
            f"(NPU compute alone: {dense['npu_cycles']:,} cycles, {dense['npu_cycles'] / total if total else 0:.0%}).")
    useful = [b for b in bounds if b.applicable and b.cycles_vs_dense < 0.95]
    if useful:
        text += " Best: " + "; ".join(f"{b.label} ≈ {b.total_cycles:,} cycles (×{b.cycles_vs_dense:.2f})" for b in useful[:3]) + "."
    else:
        text += " No technique is expected to lower the cycles much; " + \
                min(bounds, key=lambda b: b.weights_vs_dense).label + " still shrinks the encoded weights."
    largest = sizes[-1]
    if largest.accelerator != at.accelerator and total:
        text += f" More MACs: {largest.accelerator} ≈ {largest.total_cycles:,} cycles (×{largest.total_cycles / total:.2f})."
    return text + " All figures are Vela estimates."
