"""Channel pruning's plan, framework-free, so `tf channel-prune` and `torch channel-prune` keep the same
number of channels in every layer of the same network.

A frontend reads its model into `ChannelGroup`s (the channels that must go together: the outputs of the
convs an Add joins, with the BatchNorms and depthwise convs that carry them channel for channel, up to the
layers that read them) and `LayerGeometry`s (what Vela's cost of a weighted layer depends on). The plan says
how many channels each group keeps; `channel_scores` says which (the same formula on both frontends), and
the frontend removes the others.

    plan = share_plan(groups, share=0.5, granule=16)
    plan.kept["block1_pw"]            # 32 of 64
    plan.layer_rows(geometry)         # per layer: channels before → after, or why left out

Two modes (`ChannelPruneConfig`): a share of every group's channels, rounded down to the NPU's granule
(`share_plan`); or a fraction of the dense model's NPU cycles (`measured_cycle_plan`): a greedy path of
widths (NetAdapt's one-step-at-a-time, AIMET's greedy per-layer ratios) from Vela's cycles of each layer at
each candidate width for the run's Target, stopped where Vela's estimate of the whole network reaches the
target (condition/backend/npu_granule.py). The widths depend on the network's shapes and the Target only,
never on the trained weights, so both frontends choose the same widths; the weights choose which channels
stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from condition.backend.target import Target
    from condition.techniques import ChannelPruneConfig


@dataclass(frozen=True)
class ChannelGroup:
    """Channels removed together, named after their first producer.

    producers: conv / dense layers whose output channels these are (several when an Add joins them).
    followers: layers that carry them channel for channel (BatchNorm, a depthwise conv and its BatchNorm).
    readers: conv / dense layers that read them as input channels (a Dense after Flatten reads each
      channel at `LayerGeometry.in_per_channel` positions).
    left_out: why all of them stay (the class outputs, a coupling the frontend cannot follow, ...).
    """

    name: str
    channels: int
    producers: tuple[str, ...]
    followers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    left_out: str | None = None


@dataclass(frozen=True)
class LayerGeometry:
    """A weighted layer's shape, all Vela needs to estimate its cycles.

    in_group / out_group: the ChannelGroup its input / output channels belong to (None: the image, the class
    outputs, or a left-out group's fixed channels). A depthwise conv has the same group on both sides.
    in_per_channel: input values per input channel (a Dense after Flatten of H×W: H·W; else 1).
    residual: 0, or k when a residual Add sums this layer's output with the output of the layer k places
      earlier (`with_residual_adds` reads it off the groups: a group several producers make is an Add's).
    """

    name: str
    kind: str  # "conv" | "depthwise" | "fc"
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    input_hw: tuple[int, int] = (1, 1)
    in_group: str | None = None
    out_group: str | None = None
    in_per_channel: int = 1
    residual: int = 0

    def resized(self, kept: dict[str, int]) -> "LayerGeometry":
        """This layer with its groups' kept channel counts (`kept`: group name → channels)."""
        c_in = kept.get(self.in_group, None) if self.in_group else None
        c_out = kept.get(self.out_group, None) if self.out_group else None
        return replace(self, in_channels=self.in_channels if c_in is None else c_in * self.in_per_channel,
                       out_channels=self.out_channels if c_out is None else c_out)


@dataclass(frozen=True)
class LayerRow:
    """One layer of the record's plan: channels before → after, or why its channels stay."""

    name: str
    kind: str
    out_before: int
    out_after: int
    in_before: int
    in_after: int
    left_out: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "out_channels": [self.out_before, self.out_after],
                "in_channels": [self.in_before, self.in_after], **({"left_out": self.left_out} if self.left_out else {})}


@dataclass(frozen=True)
class ChannelPlan:
    """How many channels each group keeps (`kept`: group name → count; left-out groups are not in it)."""

    granule: int
    channels: dict[str, int]  # every group's channels before
    kept: dict[str, int]
    left_out: dict[str, str]  # group name → why it keeps all its channels
    mode: str  # "share" | "cycles"
    share: float | None = None
    cycle_target: float | None = None
    estimated_fraction: float | None = None  # Vela's cycles of the planned layers / the dense layers' (cycle mode)
    steps: list[str] = field(default_factory=list)  # cycle mode: the greedy choices, in order
    dense_npu_cycles: int | None = None  # cycle mode: Vela's NPU cycles of the dense network's layers, and the plan's
    planned_npu_cycles: int | None = None
    compiled_points: list[tuple[int, float]] = field(default_factory=list)  # cycle mode: (greedy path point, its network's fraction) compiled

    @property
    def reached_fraction(self) -> float | None:
        """The plan's whole-model NPU cycles over the dense model's (cycle mode, Vela estimates)."""
        if not self.dense_npu_cycles or self.planned_npu_cycles is None:
            return None
        return self.planned_npu_cycles / self.dense_npu_cycles

    def kept_of(self, group: str) -> int:
        return self.kept.get(group, self.channels[group])

    def layer_rows(self, geometry: Sequence[LayerGeometry]) -> list[LayerRow]:
        rows = []
        for g in geometry:
            after = g.resized(self.kept)
            reason = ""
            if g.out_group is None or g.out_group in self.left_out:
                reason = self.left_out.get(g.out_group or "", "") or "the model's class scores"
            rows.append(LayerRow(g.name, g.kind, g.out_channels, after.out_channels, g.in_channels, after.in_channels,
                                 reason if after.out_channels == g.out_channels else ""))
        return rows

    def note(self, geometry: Sequence[LayerGeometry]) -> str:
        """One line for the record: the mode, the granule, each layer's channels before → after, what stayed and why."""
        if self.mode == "share":
            head = f"channel-prune {self.share * 100:g} % of each layer's channels"
        elif self.reached_fraction is not None:
            head = (f"channel-prune to {self.cycle_target:g}× dense NPU cycles: Vela estimates the planned network's "
                    f"layers at {self.planned_npu_cycles:,} of the dense network's {self.dense_npu_cycles:,} NPU cycles "
                    f"({self.reached_fraction:.3f}×; {len(self.compiled_points)} points of the greedy path compiled)")
        else:
            head = f"channel-prune to {self.cycle_target:g}× dense NPU cycles (the layers' Vela estimate {self.estimated_fraction:.3f}×)"
        rows = self.layer_rows(geometry)
        changed = [f"{r.name} {r.out_before}→{r.out_after}" for r in rows if r.out_after != r.out_before]
        kept = {}
        for r in rows:
            if r.out_after == r.out_before and r.kind != "depthwise":
                why = r.left_out or ("no whole granule to remove" if self.mode == "share" else "cutting it saved the fewest cycles")
                kept.setdefault(why, []).append(r.name)
        line = f"{head}, in steps of {self.granule} channels (the Target's granule, from Vela): " + (", ".join(changed) or "no layer changed")
        if kept:
            line += "; left as they were: " + "; ".join(f"{', '.join(n)} ({why})" for why, n in kept.items())
        return line

    def as_dict(self, geometry: Sequence[LayerGeometry]) -> dict[str, object]:
        return {"mode": self.mode, "granule": self.granule, "share": self.share, "cycle_target": self.cycle_target,
                "estimated_fraction": self.estimated_fraction, "dense_npu_cycles": self.dense_npu_cycles,
                "planned_npu_cycles": self.planned_npu_cycles, "reached_fraction": self.reached_fraction,
                "compiled_path_points": [list(a) for a in self.compiled_points],
                "groups": {name: [c, self.kept_of(name)] for name, c in self.channels.items()},
                "left_out": dict(self.left_out), "layers": [r.as_dict() for r in self.layer_rows(geometry)],
                **({"greedy_steps": list(self.steps)} if self.steps else {})}


def round_down(channels: float, granule: int) -> int:
    """`channels` rounded down to a whole number of granules, at least one granule."""
    return max(granule, int(channels // granule) * granule)


def prunable(groups: Sequence[ChannelGroup], granule: int) -> tuple[list[ChannelGroup], dict[str, str]]:
    """(groups the plan may shrink, {group: why it stays}): left out by the frontend, or no more than one granule."""
    left_out, chosen = {}, []
    for g in groups:
        if g.left_out:
            left_out[g.name] = g.left_out
        elif g.channels <= granule:
            left_out[g.name] = f"{g.channels} channels, not more than the granule of {granule}"
        else:
            chosen.append(g)
    return chosen, left_out


def share_plan(groups: Sequence[ChannelGroup], share: float, granule: int) -> ChannelPlan:
    """Remove `share` of every prunable group's channels, keeping a whole number of granules (rounded down,
    at least one granule: 64 channels at 0.5 keep 32, at 0.6 with granule 16 keep 16, never 25)."""
    chosen, left_out = prunable(groups, granule)
    kept = {g.name: round_down(g.channels * (1.0 - share), granule) for g in chosen}
    return ChannelPlan(granule, {g.name: g.channels for g in groups}, kept, left_out, "share", share=share)


PLAN_VERSION = 3  # part of a channel-prune run's identity: raise when the plan for the same shapes can change (2: residual
# Adds; 3: the target is a budget, the first path point at or under it)
MIN_KEEP = 0.25  # cycle mode keeps at least this share of every group's channels (rounded up to the granule)
LayerCost = Callable[[LayerGeometry], int]  # Vela's cycles of one layer at this shape, for the run's Target


PathPoint = tuple[dict[str, int], int, str]  # (group widths, the layer table's cycles, the step that led here)


def floors(channels: dict[str, int], granule: int) -> dict[str, int]:
    """The fewest channels cycle mode leaves each group (`channels`: its dense width): MIN_KEEP of them, rounded up
    to the granule (at least one)."""
    return {name: min(c, max(granule, -(-int(np.ceil(c * MIN_KEEP)) // granule) * granule)) for name, c in channels.items()}


def single_cuts(widths: dict[str, int], floor: dict[str, int], granule: int) -> Iterator[tuple[str, int, dict[str, int]]]:
    """Every plan one cut away from `widths`: (group, its new width, the widths after), groups in order, widest cut
    last, never below the group's floor."""
    for name, width in widths.items():
        for w in range(width - granule, floor[name] - 1, -granule):
            yield name, w, {**widths, name: w}


def table_cycles(geometry: Sequence[LayerGeometry], cost: LayerCost, plan: dict[str, int]) -> int:
    """The layer table's cycles of the network at these group widths: each layer alone, summed."""
    return sum(cost(g.resized(plan)) for g in geometry)


def greedy_path(groups: Sequence[ChannelGroup], geometry: Sequence[LayerGeometry], granule: int,
                cost: LayerCost) -> tuple[dict[str, str], list[PathPoint]]:
    """NetAdapt's loop with Vela's per-layer estimate as the latency table, from the dense widths down to every
    group's floor: each step shrinks the one group whose cut saves the most cycles per unit of relative width
    lost (saved / ln(width before / width after)), so a wide, expensive group gives first and a group already
    cut deep gets dearer. A cut may span several granules (Vela's cycles do not always fall with each
    granule). No group goes below MIN_KEEP of its channels. Ties go to the earlier group: the same path
    wherever it runs. ({group: why it stays}, the path from the dense widths on)."""
    chosen, left_out = prunable(groups, granule)
    kept = {g.name: g.channels for g in chosen}
    floor = floors(kept, granule)

    def cycles(plan: dict[str, int]) -> int:
        return table_cycles(geometry, cost, plan)

    now = cycles({})
    path: list[PathPoint] = [(dict(kept), now, "")]
    while True:
        best, best_value, best_cycles, best_width = None, 0.0, now, 0
        for name, width, plan in single_cuts(kept, floor, granule):
            after = cycles(plan)
            value = (now - after) / float(np.log(kept[name] / width))
            if value > best_value:
                best, best_value, best_cycles, best_width = name, value, after, width
        if best is None:
            return left_out, path  # no cut left that saves cycles
        step = f"{best} {kept[best]}→{best_width} ({now:,}→{best_cycles:,} cycles)"
        kept[best], now = best_width, best_cycles
        path.append((dict(kept), now, step))


def _plan_at(groups: Sequence[ChannelGroup], left_out: dict[str, str], path: list[PathPoint], k: int, granule: int,
             fraction: float) -> ChannelPlan:
    channels = {g.name: g.channels for g in groups}
    widths, table, _ = path[k]
    return ChannelPlan(granule, channels, {n: c for n, c in widths.items() if c != channels[n]}, left_out, "cycles",
                       cycle_target=fraction, estimated_fraction=table / path[0][1] if path[0][1] else 1.0,
                       steps=[step for _, _, step in path[1:k + 1]])


def cycle_plan(groups: Sequence[ChannelGroup], geometry: Sequence[LayerGeometry], fraction: float, granule: int,
               cost: LayerCost) -> ChannelPlan:
    """The first point of the greedy path whose layer table reaches `fraction` × the dense layers' cycles (the
    path's end when none does: the record says what was reached)."""
    left_out, path = greedy_path(groups, geometry, granule, cost)
    k = next((i for i, (_, c, _) in enumerate(path) if c <= fraction * path[0][1]), len(path) - 1)
    return _plan_at(groups, left_out, path, k, granule, fraction)


Measure = Callable[[dict[str, int]], int]  # Vela's NPU cycles of the whole network at these group widths
REFINE_UNDER = 0.05  # a path point this far under the target tries the other single cuts from the point before it
REFINE_COMPILES = 12  # at most this many more network compiles for that


def measured_cycle_plan(groups: Sequence[ChannelGroup], geometry: Sequence[LayerGeometry], fraction: float, granule: int,
                        cost: LayerCost, measure: Measure) -> ChannelPlan:
    """The first point of the greedy path whose whole network is at or under `fraction` × the dense network's
    cycles (Vela in the loop: `measure` compiles it): a cycle target is a budget, as NetAdapt's latency budget
    (taking the nearer point instead let ds-cnn's 0.5 land at 0.501–0.524× and mobilenet-v2's 0.6 at 0.603–0.608×).
    The layer table leaves out what only the network has (weight fetch overlapping the previous layer's compute,
    the pooling, the residual Adds), so the stop is found on the network, by binary search along the path."""
    left_out, path = greedy_path(groups, geometry, granule, cost)
    measured: dict[int, int] = {}

    def network(k: int) -> int:
        if k not in measured:
            measured[k] = measure(path[k][0] if k else {})
        return measured[k]

    dense = network(0)
    goal = fraction * dense
    lo, hi = 0, len(path) - 1
    if network(hi) > goal:
        k = hi  # out of reach: every group at its floor
    else:
        while lo < hi:  # the network's cycles fall along the path
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if network(mid) <= goal else (mid + 1, hi)
        k = lo
        if k > 0 and network(k) < (1.0 - REFINE_UNDER) * goal:
            better = _largest_single_cut_under(path[k - 1], path[k], floors(path[0][0], granule), granule, geometry,
                                               cost, measure, goal)
            if better is not None and better[1] > network(k):
                point, cycles = better
                path, measured[k] = [*path[:k], point], cycles
    plan = _plan_at(groups, left_out, path, k, granule, fraction)
    return replace(plan, dense_npu_cycles=dense, planned_npu_cycles=network(k),
                   compiled_points=[(i, round(measured[i] / dense, 4)) for i in sorted(measured)])


def _largest_single_cut_under(before: PathPoint, greedy: PathPoint, floor: dict[str, int], granule: int,
                              geometry: Sequence[LayerGeometry], cost: LayerCost, measure: Measure,
                              goal: float) -> tuple[PathPoint, int] | None:
    """The greedy path's last step can jump far under the target (ds-cnn on U85-128: 0.524× → 0.428× for 0.5, one
    cut of 16 channels; U85's cycles step coarsely): of the other single cuts from the point before, those whose
    layer table is above the greedy step's, largest first, the first whose whole network is at or under the target
    (the largest network within the budget). (that point, its network's cycles), or None."""
    widths, before_table, _ = before
    options = []
    for name, w, plan in single_cuts(widths, floor, granule):
        t = table_cycles(geometry, cost, plan)
        if t > greedy[1]:
            options.append((-t, name, -w, plan))
    for neg_t, name, neg_w, plan in sorted(options)[:REFINE_COMPILES]:
        cycles = measure(plan)
        if cycles <= goal:
            step = f"{name} {widths[name]}→{-neg_w} ({before_table:,}→{-neg_t:,} cycles; the largest single cut within the target)"
            return (plan, -neg_t, step), cycles
    return None


def plan_for(config: "ChannelPruneConfig", groups: Sequence[ChannelGroup], geometry: Sequence[LayerGeometry],
             target: "Target") -> ChannelPlan:
    """The plan of `config` (a share, or a cycle target) for this network on `target`'s NPU, in whole granules
    of the NPU found with Vela (condition/backend/npu_granule.py). A cycle target is planned on Vela's per-layer
    table and checked on Vela's estimate of the whole network built from the same shapes (`network_cycles`):
    framework-free, so tf and torch plan the same widths for the same network."""
    from condition.backend.npu_granule import channel_granule, layer_cycles, network_cycles

    granule = channel_granule(target)
    if config.cycle_target is None:
        return share_plan(groups, config.channel_sparsity, granule)
    network = with_residual_adds(groups, geometry)
    return measured_cycle_plan(groups, geometry, config.cycle_target, granule, lambda g: layer_cycles(g, target),
                               lambda kept: network_cycles([g.resized(kept) for g in network], target))


def with_residual_adds(groups: Sequence[ChannelGroup], geometry: Sequence[LayerGeometry]) -> list[LayerGeometry]:
    """`geometry` with each residual Add marked on the later of two producers of one group (a group several
    producers make is an Add's output: mobilenet-v2's block3 adds block2's projection to its own), so the
    whole-network estimate has the Add too (1,176 of mobilenet-v2's 38,005 NPU cycles on U55-128 at 28×28)."""
    position = {g.name: i for i, g in enumerate(geometry)}
    marked = list(geometry)
    for group in groups:
        found = sorted(position[p] for p in group.producers if p in position)
        for earlier, later in zip(found, found[1:]):
            marked[later] = replace(marked[later], residual=later - earlier)
    return marked


def kept_indices(scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` channels with the highest scores, in ascending channel order (ties: the lower index)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return np.sort(order[:keep])


def channel_scores(filters: Sequence[np.ndarray], bn_scales: Sequence[np.ndarray | None]) -> np.ndarray:
    """Importance of each channel of a group, the same on both frontends: for every producer, the L1 norm of
    each output channel's filter (`filters[i]`: [channels, ...]) times |γ / √(var + ε)| of the BatchNorm that
    follows it (`bn_scales[i]`, None without one), i.e. the filter's size after BatchNorm folding; divided by
    the producer's mean so producers of different scales weigh alike; summed over the producers."""
    total = None
    for w, scale in zip(filters, bn_scales):
        norms = np.abs(np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)).sum(axis=1)
        if scale is not None:
            norms = norms * np.abs(np.asarray(scale, dtype=np.float64))
        norms = norms / max(float(norms.mean()), 1e-12)
        total = norms if total is None else total + norms
    return total if total is not None else np.zeros(0)
