"""Unit cells: several devices per weight, and the training algorithms that
move information between them (docs/training.md, "Several devices per
weight"; docs/unit-cells.md, tiki-taka.md and mixed-precision.md state every rule).

A ``CellState`` is the device state of a tile whose config's ``device`` is
a unit cell (``VectorUnitCell``, ``ReferenceUnitCell``,
``OneSidedUnitCell``, ``TransferCompound`` and its buffered, chopped and
dynamic variants ``BufferedTransferCompound``, ``ChoppedTransferCompound``,
``DynamicTransferCompound``) or a digital rank-update cell
(``MixedPrecisionCompound``). It holds D stacked devices, each drawn as a
single device (``fxanalog.devices.draw_state``): their weights ``weights``
(D, G, N, K), tile units, and parameters ``params`` (D, G, N, K, P), with
the counters of its algorithm, all buffers (in ``state_dict()``, loadable
with ``weights_only=True``). Devices with write noise (``write_noise_std``)
keep hidden weights ``persistent_weight`` (D, G, N, K) that the pulses
move; their visible ``weights`` are drawn around them when written or
pulsed, as a single device's. The weight the forward pass sees is
``visible()``, a weighted sum of the devices' weights.

The cell's transitions (``set_weights``, ``update``, ``post_update``) are
called by its tile (``AnalogTile``), which writes ``visible()`` into the
layer's weights afterwards (only the columns an update changed,
``take_changed``); every pulse goes through the update op
``fxanalog::tile_update`` (a stack of devices sharing the pulse trains, or
one device), every read through ``fxanalog::tile_mvm`` with the read's
``IOParameters`` (``Reads``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from fxanalog import devices
from fxanalog.config import (
    BoundManagementType,
    BufferedTransferCompound,
    ChoppedTransferCompound,
    DynamicTransferCompound,
    IOParameters,
    MixedPrecisionCompound,
    NoiseManagementType,
    OneSidedUnitCell,
    PulsedDevice,
    ReferenceUnitCell,
    TransferCompound,
    UnitCell,
    UpdateParameters,
    VectorUnitCell,
    VectorUnitCellUpdatePolicy,
)
from fxanalog.geometry import TileGeometry
from fxanalog.ops import tile_mvm as tile_mvm_op
from fxanalog.ops import tile_update as tile_update_op
from fxanalog.ops.io import TileIO
from fxanalog.ops.tile_mvm import NO_UPDATE
from fxanalog.ops.tile_update_torch import PulsedUpdate, pack_rule, pack_update

__all__ = ["DeviceState", "CellState", "DeviceStack", "is_cell", "make_cell"]

Policy = VectorUnitCellUpdatePolicy


def is_cell(device_config) -> bool:
    """The config's ``device`` is a unit cell or a digital rank-update cell."""
    return isinstance(device_config, (UnitCell, MixedPrecisionCompound))


def make_cell(device_config, geometry: TileGeometry, where: str, device=None) -> "CellState":
    """The ``CellState`` of a tile of ``geometry`` for a unit-cell config."""
    if isinstance(device_config, MixedPrecisionCompound):
        return MixedPrecisionState(device_config, geometry, where, device)
    if isinstance(device_config, DynamicTransferCompound):
        return DynamicTransferState(device_config, geometry, where, device)
    if isinstance(device_config, ChoppedTransferCompound):
        return ChoppedTransferState(device_config, geometry, where, device)
    if isinstance(device_config, BufferedTransferCompound):
        return BufferedTransferState(device_config, geometry, where, device)
    if isinstance(device_config, TransferCompound):
        return TransferState(device_config, geometry, where, device)
    if isinstance(device_config, OneSidedUnitCell):
        return OneSidedState(device_config, geometry, where, device)
    if isinstance(device_config, (VectorUnitCell, ReferenceUnitCell)):
        return VectorState(device_config, geometry, where, device)
    raise TypeError(f"{where}.device: {type(device_config).__name__} is not a unit cell fxanalog implements "
                    "(VectorUnitCell, ReferenceUnitCell, OneSidedUnitCell, TransferCompound, BufferedTransferCompound, "
                    "ChoppedTransferCompound, DynamicTransferCompound, MixedPrecisionCompound)")


# --------------------------------------------------------------------------
# Reads and writes of the algorithms


@dataclass(frozen=True)
class Reads:
    """How a cell reads its devices (the reads of a transfer or a refresh)
    on the tile array of ``geometry``."""

    geometry: TileGeometry

    def columns(self, w: Tensor, io: IOParameters, cols: Tensor, transposed: bool = False) -> Tensor:
        """Read columns of the (G, N, K) weights ``w`` by forward passes of
        every tile with one-hot inputs: ``cols`` (n_in, n) the column of each
        input piece (its own index within the piece) for each of n reads.
        Each tile reads alone (its own output noise and ADC, as a tile of its
        own), with ``io`` (noise and bound management off, as a transfer
        read). Returns (G, n_in, n, N). ``transposed``: read rows instead, by
        the transposed array (the pieces of the outputs as inputs).

        Without IR drop a one-hot read depends on its column only (the DAC,
        the weight noise and the output periphery see one input line), so
        each read is the forward pass of a one-input tile holding that
        column; with IR drop (which depends on the line's place in its tile)
        the whole tiles are read."""
        geo = self.geometry
        if transposed:
            w = w.transpose(1, 2)
            geo = TileGeometry(geo.groups, geo.out_sizes, geo.in_sizes)
        G, N, _ = w.shape
        n_in, p = geo.n_in, geo.p_in
        n = cols.shape[1]
        read_io = _read_io(io)
        packed = TileIO.pack(read_io)
        if read_io.ir_drop == 0:
            starts = torch.tensor([0, *geo.in_sizes[:-1]]).cumsum(0)
            flat = (cols + starts[:, None]).reshape(-1).to(w.device)  # (n_in * n,) the layer's columns
            tiles = w[:, :, flat].transpose(1, 2).float().reshape(G * n_in * n, 1, 1, N)
            x = torch.ones(G * n_in * n, 1, 1, device=w.device)
            y = tile_mvm_op.mvm(x, tiles, [1], list(geo.out_sizes), None, None, packed, packed, NO_UPDATE)
            return y.reshape(G, n_in, n, N)
        tiles = geo.stack_pieces(w.float())  # (G * n_in, 1, p, N)
        x = torch.nn.functional.one_hot(cols.to(w.device), p).float()  # (n_in, n, p)
        x = x.expand(G, n_in, n, p).reshape(G * n_in, n, p)
        y = tile_mvm_op.mvm(x, tiles, [p], list(geo.out_sizes), None, None, packed, packed, NO_UPDATE)
        return y.reshape(G, n_in, n, N)


def _read_io(io: IOParameters) -> IOParameters:
    """A transfer or refresh read: ``io`` without noise and bound management
    (aihwkit turns both off for these reads)."""
    if io.noise_management == NoiseManagementType.NONE and io.bound_management == BoundManagementType.NONE:
        return io
    io = copy.copy(io)
    io.noise_management = NoiseManagementType.NONE
    io.bound_management = BoundManagementType.NONE
    return io


def _pulse(w: Tensor, params: Tensor, rules, x: Tensor, d: Tensor, lr: float, up: PulsedUpdate,
           geometry: TileGeometry) -> Tensor:
    """The update op on a device (``w`` (G, N, K), ``rules`` one rule) or a
    stack sharing the trains (``w`` (D, G, N, K), ``rules`` a tuple)."""
    if x.shape[1] == 0 or lr == 0:
        return torch.zeros(w.shape[-3:], dtype=torch.bool, device=w.device)
    if w.dim() == 4 and w.shape[0] == 1:  # a stack of one is one device
        w, params, rules = w[0], params[0], rules[0]
    return tile_update_op.update(w, x.float().contiguous(), d.float().contiguous(), params, float(lr),
                                 pack_update(up), pack_rule(rules), list(geometry.in_sizes), list(geometry.out_sizes))


# --------------------------------------------------------------------------
# The stacked devices


class StateBase(nn.Module):
    """What every device state of a tile does on a checkpoint load."""

    def skip_next_load(self) -> None:
        """The next load leaves this state as it is (``AnalogTile.skip_next_load``)."""
        self._skip_load = True

    def _load_from_state_dict(self, *args, **kwargs):
        if not self.__dict__.pop("_skip_load", False):
            super()._load_from_state_dict(*args, **kwargs)


class DeviceState(StateBase):
    """The per-cross-point parameters of a tile's devices, drawn once when the
    tile is made (``fxanalog.devices.draw_state``).

    ``params`` (G, N, K, P) holds what a pulse reads, the last axis in the
    order of ``rule.pulse_names`` (bounds ``b_max``, ``b_min``, step sizes
    ``scale_up``, ``scale_down``, then the device's slopes or exponents),
    packed so that a pulse at a cross-point reads one run of memory; the
    names are attributes that give views of it. ``decay_scale``,
    ``diffusion_rate`` and ``reset_bias`` (G, N, K) exist when the device has
    decay, diffusion or a reset bias, ``persistent_weight`` (the hidden
    weights) when it has write noise. State-dict keys:
    ``<layer>.tile.device_state.<name>``."""

    POST_NAMES = ("decay_scale", "diffusion_rate", "reset_bias")

    def __init__(self, device_config, shape: tuple, device=None):
        super().__init__()
        self.rule = devices.rule_of(device_config)
        drawn = devices.draw_state(device_config, shape, device)
        names = self.rule.pulse_names
        packed = torch.stack([drawn[n] for n in names], dim=-1) if names else torch.zeros(*shape, 0, device=device)
        self.register_buffer("params", packed.contiguous())
        for name in self.POST_NAMES:
            self.register_buffer(name, drawn.get(name))
        if self.rule.write_noise > 0:
            self.register_buffer("persistent_weight", torch.zeros(shape, device=device))

    def __getattr__(self, name: str):
        names = self.__dict__.get("rule").pulse_names if "rule" in self.__dict__ else ()
        if name in names:
            return self._buffers["params"][..., names.index(name)]
        return super().__getattr__(name)

    def tensors(self) -> dict[str, Tensor]:
        """Every parameter by name (views of ``params`` for the pulse ones)."""
        out = {name: getattr(self, name) for name in self.rule.pulse_names}
        out.update({name: getattr(self, name) for name in self.POST_NAMES if getattr(self, name) is not None})
        return out


class CellState(StateBase):
    """The state of a unit cell. Every cell has ``visible()`` (the weight
    the passes see, (G, N, K)), ``set_weights(tw)`` (tile-unit weights
    written onto the devices), ``update(x, d, lr, up)`` (the pulsed update
    with the rows x (G, B, K) and d (G, B, N)), ``post_update()`` (returns
    whether the weights changed) and ``reset_columns(mask)``."""


    def take_changed(self) -> Optional[Tensor]:
        """The columns of the visible weight that the updates since the last
        call may have changed (a tensor of column indices), or None for
        any; forgets them. The tile writes only those into the layer."""
        return None

    def mark_changed(self) -> None:
        """Anything may have changed (a checkpoint loaded): the next write of
        the visible weight is whole."""

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.mark_changed()


class DeviceStack(CellState):
    """D devices per cross-point (see the module docstring); each subclass
    gives ``gammas()``, the weighting of its devices in ``visible``."""

    POST_NAMES = DeviceState.POST_NAMES

    def __init__(self, cell, device_configs: Sequence, geometry: TileGeometry, where: str, device=None):
        super().__init__()
        self.cell = cell
        self.geometry = geometry
        self.reads = Reads(geometry)
        self.device_configs = list(device_configs)
        shape = geometry.shape
        for k, cfg in enumerate(self.device_configs):
            if not isinstance(cfg, PulsedDevice):
                raise TypeError(f"{where}.device.unit_cell_devices[{k}]: {type(cfg).__name__}: expected a pulsed "
                                "device config (a PulsedDevice such as SoftBoundsDevice)")
        self.rules = tuple(devices.rule_of(c) for c in self.device_configs)
        drawn = [devices.draw_state(self._seeded(c, k), shape, device) for k, c in enumerate(self.device_configs)]
        P = max(len(r.pulse_names) for r in self.rules)
        packed = []
        for r, st in zip(self.rules, drawn):
            p = torch.stack([st[n] for n in r.pulse_names], dim=-1)
            packed.append(torch.nn.functional.pad(p, (0, P - p.shape[-1])))
        self.register_buffer("params", torch.stack(packed).contiguous())
        self.register_buffer("weights", torch.zeros((len(self.rules), *shape), device=device))
        # write noise (docs/training.md): the pulses move hidden weights, the visible ones are drawn around them
        self.noise_std = [float(r.write_noise) for r in self.rules]
        hidden = torch.zeros_like(self.weights) if any(n > 0 for n in self.noise_std) else None
        self.register_buffer("persistent_weight", hidden)
        for name in self.POST_NAMES:  # neutral values where a device lacks them
            if any(name in st for st in drawn):
                fill = 1.0 if name == "decay_scale" else 0.0
                self.register_buffer(name, torch.stack([st.get(name, torch.full(shape, fill, device=device))
                                                        for st in drawn]))
            else:
                self.register_buffer(name, None)
        self.register_buffer("update_count", torch.zeros((), dtype=torch.int64, device=device))
        self.granularity = sum(devices.granularity(c) for c in self.device_configs) / len(self.device_configs)
        self._changed: Optional[list] = None  # the columns changed since take_changed (None: any)

    def _seeded(self, cfg, k: int):
        """Device k's config; with the cell's ``construction_seed``, a seed of
        its own derived from it (so tiles made with the same seed match)."""
        seed = int(getattr(self.cell, "construction_seed", 0) or 0)
        if not seed:
            return cfg
        cfg = copy.deepcopy(cfg)
        cfg.construction_seed = seed + 7919 * k
        return cfg

    # -- the weights --------------------------------------------------------

    def visible(self, cols: Optional[Tensor] = None) -> Tensor:
        """The weight the forward and backward passes see, (G, N, K) (the
        columns ``cols`` only, when given): the weighted sum of the devices'
        weights (a view of the one device when the others weigh 0 and it 1)."""
        w = self.weights if cols is None else self.weights[..., cols]
        g = self.gammas()
        nonzero = g.nonzero().flatten().tolist()
        if len(nonzero) == 1 and float(g[nonzero[0]]) == 1.0:
            return w[nonzero[0]]
        return torch.tensordot(g.to(w.device, w.dtype), w, dims=1)

    def _mark(self, which: Optional[int], cols: Optional[Tensor] = None) -> None:
        """Device ``which`` (None: all) changed, in the columns ``cols`` (None: anywhere)."""
        g = self.gammas()
        if which is None and bool((g != 0).any()) or which is not None and float(g[which]) != 0:
            if cols is None:
                self._changed = None
            elif self._changed is not None:
                self._changed.append(cols.reshape(-1))

    def mark_changed(self) -> None:
        self._changed = None

    def take_changed(self) -> Optional[Tensor]:
        changed, self._changed = self._changed, []
        if changed is None:
            return None
        return torch.cat(changed).unique() if changed else torch.zeros(0, dtype=torch.int64)

    def device_state(self, k: int) -> dict[str, Tensor]:
        """Device k's parameters by name, (G, N, K) each."""
        out = {n: self.params[k, ..., i] for i, n in enumerate(self.rules[k].pulse_names)}
        out.update({n: getattr(self, n)[k] for n in self.POST_NAMES if getattr(self, n) is not None})
        return out

    def clip_(self, k: int, w: Tensor) -> Tensor:
        """``w`` clipped to device k's bounds."""
        p = self.params[k]
        return torch.minimum(torch.maximum(w, p[..., 1]), p[..., 0])

    # -- write noise: hidden weights take the pulses, the visible ones are drawn around them

    def _pulsed(self) -> Tensor:
        """The weights the pulses move: the hidden ones with write noise, else the visible ones."""
        return self.persistent_weight if self.persistent_weight is not None else self.weights

    def _redraw(self, k: int, where: Optional[Tensor] = None) -> None:
        """Device k's visible weights: its hidden ones plus fresh write noise
        (std ``write_noise_std`` dw_min), where ``where`` (G, N, K) when given."""
        hidden = self.persistent_weight[k]
        new = hidden + self.noise_std[k] * torch.randn_like(hidden) if self.noise_std[k] > 0 else hidden
        self.weights[k].copy_(new if where is None else torch.where(where, new, self.weights[k]))

    def _written(self, which: Sequence[int]) -> None:
        """After ``set_weights`` wrote the visible weights of the devices
        ``which``: with write noise they become the hidden ones, and the
        visible ones are drawn around them (unless the device's
        ``apply_write_noise_on_set`` is False), as for a single device."""
        if self.persistent_weight is None:
            return
        for k in which:
            self.persistent_weight[k].copy_(self.weights[k])
            if getattr(self.device_configs[k], "apply_write_noise_on_set", True):
                self._redraw(k)

    def pulse(self, which: Optional[int], x: Tensor, d: Tensor, lr: float, up: PulsedUpdate, geometry: TileGeometry,
              rules=None, block: Optional[tuple[int, int, int]] = None, cols: Optional[Tensor] = None) -> None:
        """The update op on device ``which`` (None: the whole stack, sharing
        the trains; ``rules`` overrides the devices' rules, e.g. routed).
        ``block`` (axis, start, size): only that block of the weights along
        axis -1 (inputs) or -2 (outputs), ``geometry`` being its own. With
        write noise the hidden weights take the pulses and the visible ones
        are drawn anew where the hidden ones moved. ``cols``: the only
        columns the pulses can reach (where x is not 0), if known."""
        self._mark(which, cols)
        sel = slice(None) if which is None else which
        rules = rules if rules is not None else (self.rules if which is None else self.rules[which])
        w, prm = self._pulsed()[sel], self.params[sel]
        if block is not None:
            axis, start, size = block
            w, prm = w.narrow(axis, start, size), prm.narrow(axis - 1, start, size)
        work = w if block is None else w.contiguous()
        before = work.clone() if self.persistent_weight is not None else None
        _pulse(work, prm if block is None else prm.contiguous(), rules, x, d, lr, up, geometry)
        if block is not None:
            w.copy_(work)
        if before is None:
            return
        moved = work != before
        for i, k in enumerate(range(len(self.rules)) if which is None else [which]):
            where = moved[i] if which is None else moved
            if block is not None:  # the whole device's mask, True only in the block
                full = torch.zeros(self.weights.shape[1:], dtype=torch.bool, device=where.device)
                full.narrow(axis, start, size).copy_(where)
                where = full
            self._redraw(k, where)

    @torch.no_grad()
    def post_update(self) -> bool:
        """Decay and diffusion of every device once per optimizer step (of the
        hidden weights with write noise, the visible ones then drawn anew);
        returns whether anything changed."""
        changed = False
        for k, cfg in enumerate(self.device_configs):
            st = self.device_state(k)
            if cfg.lifetime > 0:
                devices.decay_(self._pulsed()[k], st)
            if cfg.diffusion > 0:
                devices.diffuse_(self._pulsed()[k], st)
            if cfg.lifetime > 0 or cfg.diffusion > 0:
                changed = True
                if self.persistent_weight is not None:
                    self._redraw(k)
        return changed

    def reset_columns(self, mask: Tensor) -> None:
        """aihwkit's column reset, on every device of the cell."""
        self.reset_devices(mask)

    @torch.no_grad()
    def reset_devices(self, mask: Tensor, which: Optional[Sequence[int]] = None) -> None:
        """Reset the devices ``which`` (default all) where ``mask`` (G, N, K)."""
        for k in (range(len(self.rules)) if which is None else which):
            self._mark(k)
            devices.reset_(self._pulsed()[k], self.device_state(k), float(self.device_configs[k].reset_std), mask)
            if self.persistent_weight is not None:
                self._redraw(k, mask)

    def extra_repr(self) -> str:
        return f"{type(self.cell).__name__}, {len(self.rules)} devices"


def _rows_between(count0: int, rows: int, every: Sequence[int]) -> list[tuple[int, int]]:
    """Split ``rows`` update rows into runs that end where an event falls:
    after the row that brings the counter (``count0`` before the first row)
    to a multiple of one of ``every`` (0: never). Returns (start, stop)
    pairs, the last one possibly without an event."""
    cuts = set()
    for e in every:
        if e > 0:
            first = e - (count0 % e)  # rows until the next multiple
            cuts.update(range(first, rows + 1, e))
    out, start = [], 0
    for c in sorted(cuts):
        out.append((start, c))
        start = c
    if start < rows:
        out.append((start, rows))
    return out


# --------------------------------------------------------------------------
# VectorUnitCell, ReferenceUnitCell


class VectorState(DeviceStack):
    """``VectorUnitCell``/``ReferenceUnitCell``: the weight is sum_k gamma_k
    W_k; each update row goes to every device with the same pulse trains
    (``ALL``) or to one device chosen by the policy."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        cfgs = list(cell.unit_cell_devices)
        if isinstance(cell, ReferenceUnitCell) and len(cfgs) == 1:
            cfgs = [cfgs[0], copy.deepcopy(cfgs[0])]  # the same device twice (aihwkit's)
        super().__init__(cell, cfgs, geometry, where, device)
        self.register_buffer("update_index", torch.tensor(int(cell.first_update_idx), device=device))

    def gammas(self) -> Tensor:
        D = len(self.rules)
        g = list(self.cell.gamma_vec) or [1.0 / D] * D
        return torch.tensor(g, dtype=torch.float32)

    @torch.no_grad()
    def set_weights(self, tw: Tensor) -> None:
        """Every device gets ``tw`` (clipped to its bounds); with
        ``SINGLE_FIXED`` only the device being updated, the others keep
        theirs (a reference device stays at its weights, 0 when made)."""
        fixed = self.cell.update_policy == Policy.SINGLE_FIXED
        if not fixed:
            self.update_index.fill_(int(self.cell.first_update_idx))
        written = [k for k in range(len(self.rules)) if not fixed or k == int(self.update_index)]
        for k in written:
            self.weights[k].copy_(self.clip_(k, tw))
        self._written(written)
        self.update_count.zero_()

    def _assign(self, rows: int) -> Optional[Tensor]:
        """The device of each row (None: all, ``ALL``), advancing the index
        as aihwkit's update cycles do (one cycle per row)."""
        policy, D = self.cell.update_policy, len(self.rules)
        if policy == Policy.ALL:
            return None
        if policy == Policy.SINGLE_FIXED:
            return torch.full((rows,), int(self.update_index), dtype=torch.int64)
        if policy == Policy.SINGLE_SEQUENTIAL:
            idx = (int(self.update_index) + 1 + torch.arange(rows)) % D
        else:  # SINGLE_RANDOM
            idx = torch.floor(torch.rand(rows) * D).to(torch.int64).clamp(max=D - 1)
        if rows:
            self.update_index.fill_(int(idx[-1]))
        return idx

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> None:
        pu = PulsedUpdate.of(up, self.granularity)
        assign = self._assign(x.shape[1])
        if assign is None:  # every device, the same trains
            self.pulse(None, x, d, lr, pu, self.geometry)
        else:  # each device its rows, in order (the other devices' rows do not touch it)
            for k in assign.unique().tolist():
                sel = (assign == k).nonzero().flatten().to(x.device)
                self.pulse(k, x[:, sel], d[:, sel], lr, pu, self.geometry)
        self.update_count.add_(x.shape[1])


# --------------------------------------------------------------------------
# OneSidedUnitCell


class OneSidedState(DeviceStack):
    """``OneSidedUnitCell``: the weight is g+ - g- (device 1 minus device 0);
    up pulses of the weight go to g+, down pulses to g- as up pulses, with
    the same trains; every ``refresh_every`` rows (times the batch with
    ``units_in_mbatch``) the pairs near saturation are reset and their
    difference written back onto one device."""

    G_MINUS, G_PLUS = 0, 1

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        cfgs = list(cell.unit_cell_devices)
        cfgs = [cfgs[0], copy.deepcopy(cfgs[0])] if len(cfgs) == 1 else cfgs
        super().__init__(cell, cfgs, geometry, where, device)
        if cell.copy_inverted:
            self._invert_g_plus()
        routes = {self.G_MINUS: devices.ROUTE_DOWN_AS_UP, self.G_PLUS: devices.ROUTE_UP}
        self.routed = tuple(replace(r, route=routes[k]) for k, r in enumerate(self.rules))
        self.register_buffer("refresh_count", torch.zeros((), dtype=torch.int64, device=device))

    def gammas(self) -> Tensor:
        return torch.tensor([-1.0, 1.0])

    @torch.no_grad()
    def _invert_g_plus(self) -> None:
        """``copy_inverted``, as aihwkit's C++ (copyInvertDeviceParameter): g+
        takes its up pulses with its own down step and mirrored bounds
        (dw+ <-> dw-, [b_min, b_max] -> [-b_max, -b_min]); the slopes of a
        linear step become g-'s, negated and swapped (slope+ = -slope-_g-,
        slope- = -slope+_g-), the exponents of a power step g-'s swapped, a
        reference negated."""
        names = self.rules[self.G_PLUS].pulse_names
        p, q = self.params[self.G_PLUS], self.params[self.G_MINUS].clone()
        col = {n: i for i, n in enumerate(names)}
        own = p.clone()
        p[..., col["scale_up"]], p[..., col["scale_down"]] = own[..., col["scale_down"]], own[..., col["scale_up"]]
        p[..., col["b_max"]], p[..., col["b_min"]] = -own[..., col["b_min"]], -own[..., col["b_max"]]
        other = {n: i for i, n in enumerate(self.rules[self.G_MINUS].pulse_names)}
        if "slope_up" in col:
            p[..., col["slope_up"]] = -q[..., other["slope_down"]]
            p[..., col["slope_down"]] = -q[..., other["slope_up"]]
        if "gamma_up" in col:
            p[..., col["gamma_up"]] = q[..., other["gamma_down"]]
            p[..., col["gamma_down"]] = q[..., other["gamma_up"]]
        if "reference" in col:
            p[..., col["reference"]] = -own[..., col["reference"]]

    @torch.no_grad()
    def set_weights(self, tw: Tensor) -> None:
        """g+ = max(w, 0), g- = max(-w, 0), each clipped to its bounds."""
        self.weights[self.G_PLUS].copy_(self.clip_(self.G_PLUS, tw.clamp(min=0)))
        self.weights[self.G_MINUS].copy_(self.clip_(self.G_MINUS, (-tw).clamp(min=0)))
        self._written([self.G_MINUS, self.G_PLUS])
        self.update_count.zero_()

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> None:
        pu = PulsedUpdate.of(up, self.granularity)
        every = int(self.cell.refresh_every) * (x.shape[1] if self.cell.units_in_mbatch else 1)
        for start, stop in _rows_between(int(self.update_count), x.shape[1], [every]):
            self.pulse(None, x[:, start:stop], d[:, start:stop], lr, pu, self.geometry, rules=self.routed)
            self.update_count.add_(stop - start)
            if every > 0 and int(self.update_count) % every == 0:
                self.refresh()

    @torch.no_grad()
    def refresh(self) -> int:
        """Read both devices column by column (``refresh_forward``), reset
        the pairs past the thresholds and write their difference onto the
        larger device (``refresh_update``). Returns how many were refreshed."""
        cell, geo = self.cell, self.geometry
        G, N, K = geo.shape
        cols = torch.arange(geo.p_in).expand(geo.n_in, -1)
        valid = geo.pad_mask(self.weights.device).reshape(-1)  # (n_in * p) real columns
        reads = [self.reads.columns(self.weights[k], cell.refresh_forward, cols).reshape(G, -1, N)[:, valid]
                 for k in (self.G_PLUS, self.G_MINUS)]
        wp, wm = (r.transpose(1, 2) for r in reads)  # (G, N, K) as read
        w_max = abs(self.device_configs[self.G_PLUS].w_max)
        w_min = abs(self.device_configs[self.G_MINUS].w_max)  # the max of g-: both devices grow
        hi, lo = cell.refresh_upper_thres, cell.refresh_lower_thres
        refresh = torch.where(wp > wm, (wp / w_max > hi) & (wm / w_min > lo), (wp / w_max > lo) & (wm / w_min > hi))
        n = int(refresh.sum())
        if n == 0:
            return 0
        self.reset_devices(refresh)
        eye = torch.eye(K, device=self.weights.device).expand(G, K, K).contiguous()
        for k, value in ((self.G_PLUS, torch.where(refresh & (wp > wm), wp - wm, 0.0)),
                         (self.G_MINUS, torch.where(refresh & (wp <= wm), wm - wp, 0.0))):
            if bool((value != 0).any()):  # column j: x = e_j, d = -value, lr 1 (the device grows by value)
                pu = PulsedUpdate.of(cell.refresh_update, devices.granularity(self.device_configs[k]))
                self.pulse(k, eye, -value.transpose(1, 2), 1.0, pu, geo)
        self.refresh_count.add_(n)
        return n


# --------------------------------------------------------------------------
# TransferCompound (Tiki-Taka)


class TransferState(DeviceStack):
    """``TransferCompound``: the SGD rows pulse device 0 (A, fast); every
    ``transfer_every`` rows (times the batch with ``units_in_mbatch``)
    ``n_reads_per_transfer`` columns of device k are read with
    ``transfer_forward`` and written onto device k + 1 by a pulsed update
    with ``transfer_update``; the weight is sum_k gamma_k W_k."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        cfgs = list(cell.unit_cell_devices)
        cfgs = [cfgs[0]] + [cfgs[1]] * (len(cfgs) - 1)  # the devices after the first are all of the second's spec
        super().__init__(cell, cfgs, geometry, where, device)
        D = len(cfgs)
        size_in = geometry.in_sizes if cell.transfer_columns else geometry.out_sizes
        size_out = max(geometry.out_sizes if cell.transfer_columns else geometry.in_sizes)
        self.n_reads = min(int(cell.n_reads_per_transfer), min(size_in))
        if cell.transfer_every_vec:
            every = [float(v) for v in cell.transfer_every_vec]
        else:  # geometric: each next device transfers out_size / n_reads times less often
            every = [float(cell.transfer_every) * (size_out / self.n_reads) ** k for k in range(D)]
            if cell.no_self_transfer:
                every[-1] = 0.0
        self.every = every
        self.lr_vec = [float(v) for v in cell.transfer_lr_vec] or [float(cell.transfer_lr)] * D
        n_pieces = len(size_in)
        self.register_buffer("slice_index", torch.zeros((D, n_pieces), dtype=torch.int64, device=device))

    def gammas(self) -> Tensor:
        D = len(self.rules)
        if self.cell.gamma_vec:
            return torch.tensor([float(v) for v in self.cell.gamma_vec])
        return torch.tensor([float(self.cell.gamma) ** (D - 1 - k) for k in range(D)])

    @torch.no_grad()
    def set_weights(self, tw: Tensor) -> None:
        """Every device to 0 (clipped), the last to w / gamma_last."""
        gam = self.gammas()
        self.weights.zero_()
        for k in range(len(self.rules)):
            self.weights[k].copy_(self.clip_(k, self.weights[k]))
        self.weights[-1].copy_(self.clip_(len(self.rules) - 1, tw / float(gam[-1])))
        self._written(range(len(self.rules)))
        self.slice_index.zero_()
        self.update_count.zero_()

    def reset_columns(self, mask: Tensor) -> None:
        """aihwkit's column reset of a transfer compound: the fast device only."""
        self.reset_devices(mask, which=[0])

    def _every_rows(self, rows: int) -> list[int]:
        if self.cell.units_in_mbatch:
            return [max(math.ceil(e * rows), 0) for e in self.every]
        return [max(math.floor(e + 0.5), 0) for e in self.every]  # aihwkit's roundf: halves away from 0

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> None:
        cell = self.cell
        pu = PulsedUpdate.of(up, self.granularity)
        fast_lr = float(cell.fast_lr) if cell.fast_lr > 0 else lr
        every = self._every_rows(x.shape[1])
        for start, stop in _rows_between(int(self.update_count), x.shape[1], every):
            self.pulse(0, x[:, start:stop], d[:, start:stop], fast_lr, pu, self.geometry)
            self.update_count.add_(stop - start)
            count = int(self.update_count)
            for k, e in enumerate(every):
                if e > 0 and count % e == 0:
                    self.transfer(k, lr)

    @torch.no_grad()
    def transfer(self, k: int, lr: float) -> None:
        """Read ``n_reads_per_transfer`` columns (rows with
        ``transfer_columns = False``) of device k, from each tile's slice
        index on (wrapping), and add them to device k + 1 by a pulsed update
        with learning rate ``transfer_lr_vec[k]`` (times the SGD learning
        rate with ``scale_transfer_lr``)."""
        D = len(self.rules)
        to = min(k + 1, D - 1)
        t_lr = self._transfer_lr(k, lr)
        if to == k or t_lr == 0:
            return
        cell, geo = self.cell, self.geometry
        idx, flat = self._pick(k)
        read = self._read(k, idx)
        if cell.with_reset_prob > 0:  # the columns read, each piece with its probability
            G, N, K = geo.shape
            sizes = self._read_sizes()
            p = 1 - (1 - float(cell.with_reset_prob)) ** self.n_reads
            hit = torch.rand(len(sizes)) < p
            if bool(hit.any()):
                mask = torch.zeros(K, dtype=torch.bool)
                mask[flat.reshape(len(sizes), -1)[hit].reshape(-1)] = True
                self.reset_devices(mask.to(self.weights.device).expand(G, N, K), which=[k])
        self._write(to, flat, read, t_lr, cell.transfer_update)

    # -- the pieces of a transfer (shared with the buffered compounds) -------

    def _read_sizes(self) -> Sequence[int]:
        """The sizes of the pieces along the read axis: the tiles' inputs
        (column reads) or outputs (row reads)."""
        geo = self.geometry
        return geo.in_sizes if self.cell.transfer_columns else geo.out_sizes

    def _transfer_lr(self, k: int, lr: float) -> float:
        """``transfer_lr_vec[k]``, times the SGD learning rate with ``scale_transfer_lr``."""
        return self.lr_vec[k] * (lr if self.cell.scale_transfer_lr else 1.0)

    def _pick(self, k: int) -> tuple[Tensor, Tensor]:
        """The reads of device k's next transfer, advancing its slice index:
        ``idx`` (pieces, n), each read piece's next n lines from its slice
        index (wrapping; from a random line with ``random_selection``), and
        ``flat`` (pieces * n,) the same lines as indices of the layer's
        columns (rows)."""
        sizes = torch.tensor(self._read_sizes())
        start = self.slice_index[k].cpu()
        if self.cell.random_selection:
            start = torch.floor(torch.rand(len(sizes)) * sizes).to(torch.int64).clamp(max=sizes - 1)
        idx = (start[:, None] + torch.arange(self.n_reads)[None, :]) % sizes[:, None]  # (pieces, n)
        self.slice_index[k] = ((start + self.n_reads) % sizes).to(self.slice_index.device)
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)[:-1]])
        return idx, (idx + starts[:, None]).reshape(-1)

    def _read(self, k: int, idx: Tensor) -> Tensor:
        """Device k read at the lines ``idx`` by each tile with one-hot inputs
        (``transfer_forward``): (G, m, L) for the m = pieces * n lines read, L
        the lines across them (the outputs for column reads)."""
        columns = bool(self.cell.transfer_columns)
        read = self.reads.columns(self.weights[k], self.cell.transfer_forward, idx, transposed=not columns)
        return read.reshape(read.shape[0], -1, read.shape[-1])

    def _gather(self, t: Tensor, flat: Tensor) -> Tensor:
        """The entries of a (G, N, K) tensor at the lines read, laid out as a read (G, m, L)."""
        flat = flat.to(t.device)
        return t[:, :, flat].transpose(1, 2) if self.cell.transfer_columns else t[:, flat, :]

    def _scatter(self, t: Tensor, flat: Tensor, v: Tensor) -> None:
        """Write ``v`` (G, m, L) back into the lines read of the (G, N, K) tensor ``t``."""
        flat = flat.to(t.device)
        if self.cell.transfer_columns:
            t[:, :, flat] = v.transpose(1, 2)
        else:
            t[:, flat, :] = v

    def _write(self, to: int, flat: Tensor, amount: Tensor, lr: float, update: UpdateParameters) -> None:
        """One pulsed update of device ``to`` that moves the cross-points of
        the lines read by about lr * ``amount`` (G, m, L): x the unit vectors
        of the columns and d = -amount (rows: d the unit vectors, x = -amount)."""
        geo, dev = self.geometry, self.weights.device
        G, N, K = geo.shape
        pu = PulsedUpdate.of(update, devices.granularity(self.device_configs[to]))
        unit = torch.nn.functional.one_hot(flat.to(dev), K if self.cell.transfer_columns else N).float()
        unit = unit.expand(G, -1, -1).contiguous()
        columns = bool(self.cell.transfer_columns)
        xs, ds = (unit, -amount) if columns else (-amount, unit)
        self.pulse(to, xs, ds, lr, pu, geo, cols=flat if columns else None)


# --------------------------------------------------------------------------
# BufferedTransferCompound (TTv2), ChoppedTransferCompound (c-TTv2),
# DynamicTransferCompound (AGAD): the rules of aihwkit 1.1.0's C++ CPU
# simulator (rpu_buffered_transfer_device.cpp, rpu_chopped_transfer_device.cpp,
# rpu_dynamic_transfer_device.cpp); the configs' docstrings state them.


class BufferedTransferState(TransferState):
    """``BufferedTransferCompound``: a transfer adds the reads of device k,
    times |lr_t|, to a digital buffer H_k (``buffer`` (D - 1, G, N, K)), and
    writes its whole steps n = trunc(H / (thres_scale dw)) (capped at the
    transfer's BL) onto device k + 1; H keeps momentum H (``forget_buffer``)
    or H - (1 - momentum) n thres_scale dw where n != 0. aihwkit does not
    clear the buffer when weights are set, and neither does this."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        super().__init__(cell, geometry, where, device)
        D = len(self.rules)
        self.register_buffer("buffer", torch.zeros((D - 1, *geometry.shape), device=device))

    def _transfer_lr(self, k: int, lr: float) -> float:
        """The base's, times gamma_k / gamma_{k+1} when both are positive
        (aihwkit's ``BufferedTransferRPUDeviceMetaParameter::getTransferLR``)."""
        t_lr = super()._transfer_lr(k, lr)
        g = self.gammas()
        to = min(k + 1, len(self.rules) - 1)
        if float(g[k]) > 0 and float(g[to]) > 0:
            t_lr *= float(g[k]) / float(g[to])
        return t_lr

    def _max_steps(self) -> float:
        return float(self.cell.transfer_update.desired_bl)

    @torch.no_grad()
    def transfer(self, k: int, lr: float) -> None:
        D = len(self.rules)
        to = min(k + 1, D - 1)
        t_lr = self._transfer_lr(k, lr)
        if to == k or t_lr == 0:  # the last device does not transfer (aihwkit: nor onto itself)
            return
        cell = self.cell
        idx, flat = self._pick(k)
        read = self._read(k, idx)  # read with +1 (aihwkit: readVector(..., 1.0))
        dw = devices.granularity(self.device_configs[to])
        thres = float(cell.thres_scale) * dw
        bl = self._max_steps()
        omega = self._gather(self.buffer[k], flat) + read * abs(t_lr)
        n = torch.trunc(omega / thres).clamp(-bl, bl)
        moved = n != 0
        if cell.forget_buffer:
            kept = omega * float(cell.momentum)
        else:
            kept = omega - (1.0 - min(max(float(cell.momentum), 0.0), 1.0)) * n * thres
        self._scatter(self.buffer[k], flat, torch.where(moved, kept, omega))
        if bool(moved.any()):
            self._write(to, flat, n, float(cell.step) * dw, cell.transfer_update)


class ChoppedTransferState(BufferedTransferState):
    """``ChoppedTransferCompound``: two devices A, C; the SGD rows reach A
    with the sign c_j c'_i of the choppers (``in_chopper`` (G, L_read): one
    per column, ``out_chopper`` (G, read pieces, L_other): one per row and
    tile; True = flipped); a transfer reads the next line of each tile, adds
    it sign-corrected and scaled by |lr_t| / g to the buffer, and writes
    whole buffer units onto C. ``transfer_counter`` (read pieces,) counts
    the full sweeps of each tile; ``m_x`` (G, n_in), ``m_d`` (G, n_out) are
    the running means of ``auto_scale``; ``count_lr`` (G, n_out, n_in) the
    fast learning rate of the last row, per tile.

    Deviation from aihwkit, whose tiles of one layer each hold their own
    choppers: the input chopper of a column is shared by the tiles along it
    (the output pieces; each cross-point still sees a chopper with the same
    switching law, identical with regular switching), so that an SGD row
    stays one pulsed update; the output choppers are per tile as in aihwkit
    (rows mode: the roles of inputs and outputs swap)."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        super().__init__(cell, geometry, where, device)
        G, N, K = geometry.shape
        columns = bool(cell.transfer_columns)
        L_read, L_other = (K, N) if columns else (N, K)
        pieces = len(self._read_sizes())
        self.register_buffer("in_chopper", torch.zeros((G, L_read), dtype=torch.bool, device=device))
        self.register_buffer("out_chopper", torch.zeros((G, pieces, L_other), dtype=torch.bool, device=device))
        self.register_buffer("transfer_counter", torch.zeros(pieces, dtype=torch.int64, device=device))
        self.register_buffer("m_x", torch.zeros((G, geometry.n_in), device=device))
        self.register_buffer("m_d", torch.zeros((G, geometry.n_out), device=device))
        self.register_buffer("count_lr", torch.zeros((G, geometry.n_out, geometry.n_in), device=device))

    # -- the fast update -----------------------------------------------------

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> None:
        pu = PulsedUpdate.of(up, self.granularity)
        x, d, fast_lr = self._fast_rows(x.float(), d.float(), lr, up)
        every = self._every_rows(x.shape[1])
        for start, stop in _rows_between(int(self.update_count), x.shape[1], every):
            self._chopped_pulse(x[:, start:stop], d[:, start:stop], fast_lr, pu)
            self.update_count.add_(stop - start)
            count = int(self.update_count)
            for k, e in enumerate(every):
                if e > 0 and count % e == 0:
                    self.transfer(k, lr)

    def _fast_rows(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> tuple[Tensor, Tensor, float]:
        """The rows and learning rate of the update of A. Without
        ``auto_scale``: ``fast_lr`` (the SGD rate when 0). With it (and
        fast_lr > 0), row r of tile (o, p) has the rate fast_lr BL dw_A /
        (m_x[p] m_d[o]), m the running means of the rows' largest |x| and
        |d| per piece, updated before each row by (1 - auto_momentum) / B
        (the first row sets them); the rate's per-row, per-piece factors are
        applied to x and d (1 / m_x, 1 / m_d) and the op gets fast_lr BL
        dw_A: the same pulse probabilities with update management (the
        presets' setting), the same mean without."""
        cell, geo = self.cell, self.geometry
        fast = float(cell.fast_lr) if cell.fast_lr > 0 else float(lr)
        if not (cell.auto_scale and cell.fast_lr > 0):
            self.count_lr.fill_(fast)
            return x, d, fast
        vx, vd = _piece_maxima(x, geo.in_sizes), _piece_maxima(d, geo.out_sizes)  # (G, B, pieces)
        tau = (1.0 - float(cell.auto_momentum)) / x.shape[1]
        mx, md, rows_x, rows_d = self.m_x.clone(), self.m_d.clone(), [], []
        for r in range(x.shape[1]):  # the running means, row by row (small (G, pieces) tensors)
            mx, md = _running_max(mx, vx[:, r], tau), _running_max(md, vd[:, r], tau)
            rows_x.append(mx)
            rows_d.append(md)
        self.m_x.copy_(mx)
        self.m_d.copy_(md)
        mx_rows, md_rows = torch.stack(rows_x, dim=1), torch.stack(rows_d, dim=1)  # (G, B, pieces)
        inv_x = torch.where(mx_rows > 0, 1.0 / mx_rows, torch.ones_like(mx_rows))
        inv_d = torch.where(md_rows > 0, 1.0 / md_rows, torch.ones_like(md_rows))
        base = float(cell.fast_lr) * float(up.desired_bl) * devices.granularity(self.device_configs[0])
        self.count_lr.copy_(base * inv_d[:, -1, :, None] * inv_x[:, -1, None, :])
        x = x * inv_x.repeat_interleave(torch.tensor(geo.in_sizes, device=x.device), dim=-1)
        d = d * inv_d.repeat_interleave(torch.tensor(geo.out_sizes, device=d.device), dim=-1)
        return x, d, base

    def _chopped_pulse(self, x: Tensor, d: Tensor, lr: float, pu: PulsedUpdate) -> None:
        """The update op on A with the chopper signs: cross-point (i, j)
        gets the pulses of x_j d_i with the sign flipped where its input and
        output choppers differ (aihwkit flips the coincidences; flipping
        the signs of x_j and d_i does the same, the trains depend on |x|,
        |d|). One call when the output choppers agree across the read
        pieces, else one per piece (a tile column of the array)."""
        geo, cell = self.geometry, self.cell
        s_in = 1.0 - 2.0 * self.in_chopper.float()  # (G, L_read)
        s_out = 1.0 - 2.0 * self.out_chopper.float()  # (G, pieces, L_other)
        columns = bool(cell.transfer_columns)
        if bool((s_out == s_out[:, :1]).all()):
            xs, ds = (s_in, s_out[:, 0]) if columns else (s_out[:, 0], s_in)
            self.pulse(0, x * xs[:, None, :], d * ds[:, None, :], lr, pu, geo)
            return
        start = 0
        for p, size in enumerate(self._read_sizes()):  # one tile column (row) of the array at a time
            part = slice(start, start + size)
            if columns:
                sub = TileGeometry(geo.groups, (size,), geo.out_sizes)
                xp, dp = x[:, :, part] * s_in[:, None, part], d * s_out[:, p, None, :]
            else:
                sub = TileGeometry(geo.groups, geo.in_sizes, (size,))
                xp, dp = x * s_out[:, p, None, :], d[:, :, part] * s_in[:, None, part]
            self.pulse(0, xp, dp, lr, pu, sub, block=(-1 if columns else -2, start, size))
            start += size

    # -- the transfer --------------------------------------------------------

    def _read_sign(self, flat: Tensor) -> Tensor:
        """(G, m, L): -1 where the read line's input chopper and the output
        chopper of its tile differ (the sign the fast update had there)."""
        dev = self.in_chopper.device
        piece = torch.arange(len(self._read_sizes())).repeat_interleave(self.n_reads).to(dev)
        differ = self.in_chopper[:, flat.to(dev), None] != self.out_chopper[:, piece, :]
        return 1.0 - 2.0 * differ.float()

    def _buffer_scale(self, t_lr: float, flat: Tensor) -> Tensor:
        """|lr_t| / g per read line (m, 1), or (G, m, L) with
        ``correct_gradient_magnitudes`` (divided by each tile's fast rate):
        g = buffer_granularity dw_A, times auto_granularity / (in_size
        |transfer_every|) when ``auto_granularity`` > 0, times dw_C / dw_A
        with ``correct_gradient_magnitudes``
        (``ChoppedTransferRPUDeviceMetaParameter::getTransferLRScale``;
        aihwkit's Python docs say ``auto_granularity`` has no effect with
        ``correct_gradient_magnitudes``, its C++ applies it, as here)."""
        cell = self.cell
        dw_a = devices.granularity(self.device_configs[0])
        dw_c = devices.granularity(self.device_configs[1])
        sizes = torch.tensor(self._read_sizes(), dtype=torch.float32).repeat_interleave(self.n_reads)
        bg = (float(cell.buffer_granularity) if cell.buffer_granularity > 0 else 1.0) * dw_a * torch.ones_like(sizes)
        if cell.auto_granularity > 0:
            bg = bg * float(cell.auto_granularity) / (sizes * abs(float(cell.transfer_every)))
        bg = bg.to(self.weights.device)[:, None]
        if not cell.correct_gradient_magnitudes:
            return abs(t_lr) / bg
        geo, dev = self.geometry, self.count_lr.device
        per_point = self.count_lr.repeat_interleave(torch.tensor(geo.out_sizes, device=dev), dim=1)
        per_point = per_point.repeat_interleave(torch.tensor(geo.in_sizes, device=dev), dim=2)  # (G, N, K)
        count = self._gather(per_point, flat)  # (G, m, L)
        return abs(t_lr) / count / (bg * dw_c / dw_a)

    def _steps(self, omega: Tensor) -> tuple[Tensor, Tensor]:
        """The whole buffer units n = trunc(H) where |H| >= 1 (capped at BL)
        and the buffer after them: momentum H (``forget_buffer``) or
        H - (1 - momentum) n."""
        cell = self.cell
        bl = self._max_steps()
        n = torch.where(omega.abs() >= 1.0, torch.trunc(omega).clamp(-bl, bl), torch.zeros_like(omega))
        if cell.forget_buffer:
            kept = omega * float(cell.momentum)
        else:
            kept = omega - (1.0 - min(max(float(cell.momentum), 0.0), 1.0)) * n
        return n, torch.where(n != 0, kept, omega)

    @torch.no_grad()
    def transfer(self, k: int, lr: float) -> None:
        """Each tile reads its next line of A (``transfer_forward``); the
        buffer gets the read, sign corrected by the choppers, times
        |lr_t| / g (``no_buffer``: from 0); whole units go onto C; then the
        choppers of the lines read may switch and the sweep counters of the
        tiles whose last line was read advance."""
        t_lr = self._transfer_lr(k, lr)
        if k != 0 or t_lr == 0:  # two devices: only A transfers
            return
        cell = self.cell
        idx, flat = self._pick(0)
        read = self._read(0, idx)
        omega = self._gather(self.buffer[0], flat) if not cell.no_buffer else torch.zeros_like(read)
        omega = omega + self._read_sign(flat) * read * self._buffer_scale(t_lr, flat)
        n, kept = self._steps(omega)
        self._scatter(self.buffer[0], flat, kept)
        if bool((n != 0).any()):
            self._write(1, flat, n, float(cell.step) * devices.granularity(self.device_configs[1]),
                        cell.transfer_update)
        self._switch_choppers(idx, flat)

    def _last_read(self, idx: Tensor) -> Tensor:
        """(pieces,) whether each piece's read was its last line."""
        sizes = torch.tensor(self._read_sizes())
        return (idx[:, -1] == sizes - 1).to(self.transfer_counter.device)

    def _switch_choppers(self, idx: Tensor, flat: Tensor) -> None:
        """After the reads (aihwkit's order): the input chopper of each line
        read switches with probability ``in_chop_prob`` (random) or, in
        regular mode, when its tile's sweep counter c has c mod N = N - 1,
        N = max(ceil(1 / in_chop_prob), 2); a tile whose last line was read
        switches each output chopper with probability ``out_chop_prob`` and
        counts one more sweep."""
        cell, dev = self.cell, self.in_chopper.device
        G = self.in_chopper.shape[0]
        flat = flat.to(dev)
        p = float(cell.in_chop_prob)
        if p > 0:
            if cell.in_chop_random:
                flip = torch.rand(G, flat.numel()) < p
            else:
                period = max(math.ceil(1.0 / p), 2)
                counter = self.transfer_counter.repeat_interleave(self.n_reads)
                flip = ((counter % period) + 1 == period).expand(G, -1)
            self.in_chopper[:, flat] ^= flip.to(dev)
        last = self._last_read(idx)
        if float(cell.out_chop_prob) > 0 and bool(last.any()):
            flip = torch.rand(self.out_chopper.shape) < float(cell.out_chop_prob)
            self.out_chopper ^= (flip.to(dev) & last[None, :, None])
        self.transfer_counter += last.to(torch.int64)


def _piece_maxima(v: Tensor, sizes: Sequence[int]) -> Tensor:
    """(G, B, L) rows -> (G, B, pieces): each row's largest |v| over each piece of ``sizes``."""
    return torch.stack([p.abs().amax(dim=-1) for p in v.split(list(sizes), dim=-1)], dim=-1)


def _running_max(m: Tensor, v: Tensor, tau: float) -> Tensor:
    """aihwkit's ``updateAutoScale``: m <- v when m <= 0 (the first value),
    unchanged when v <= 0, else (1 - tau) m + tau v."""
    return torch.where(m <= 0, v, torch.where(v <= 0, m, (1.0 - tau) * m + tau * v))


class DynamicTransferState(ChoppedTransferState):
    """``DynamicTransferCompound`` (AGAD): as the chopped compound, but the
    buffer accumulates the read minus ``past_mean`` (the running mean
    ``running_mean`` of the reads at the end of the previous chopper
    period), sign corrected; ``in_chopper_switched`` (G, L_read) marks the
    lines whose chopper switched at their last read. The write onto C
    starts once more than N sweeps are done; the output choppers never
    switch (aihwkit's CPU code does not switch them here, so the config
    refuses ``out_chop_prob`` > 0)."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        super().__init__(cell, geometry, where, device)
        shape = geometry.shape
        self.register_buffer("running_mean", torch.zeros(shape, device=device))
        self.register_buffer("past_mean", torch.zeros(shape, device=device))
        self.register_buffer("in_chopper_switched", torch.zeros_like(self.in_chopper))

    def _period(self) -> int:
        """N, the reads of a line per chopper period (``getNumInChopSamples``)."""
        p = float(self.cell.in_chop_prob)
        return max(math.ceil(1.0 / p), 2) if p > 0 else 2

    @torch.no_grad()
    def transfer(self, k: int, lr: float) -> None:
        t_lr = self._transfer_lr(k, lr)
        if k != 0 or t_lr == 0:
            return
        cell, dev = self.cell, self.weights.device
        G = self.weights.shape[1]
        idx, flat = self._pick(0)
        flat_d = flat.to(dev)
        read = self._read(0, idx)  # v, not sign corrected
        N = self._period()
        counter = self.transfer_counter.repeat_interleave(self.n_reads)  # (m,) each read's sweep count
        sample = counter % N + 1  # its place in the chopper period (exact with regular switching)
        switched = self.in_chopper_switched[:, flat_d]  # (G, m)
        self.in_chopper_switched[:, flat_d] = False
        mean = self._gather(self.running_mean, flat)
        past = torch.where(switched[..., None], mean, self._gather(self.past_mean, flat))  # a new period begins
        self._scatter(self.past_mean, flat, past)
        scale = self._buffer_scale(t_lr, flat)
        if cell.experimental_correct_accumulation:
            dw_a = devices.granularity(self.device_configs[0])
            scale = scale / torch.clamp(sample.float(), max=1.0 / dw_a).to(dev)[:, None]
        omega = self._gather(self.buffer[0], flat) + self._read_sign(flat) * (read - past) * scale
        n, kept = self._steps(omega)
        if not cell.forget_buffer and cell.buffer_cap > 0:
            cap = float(cell.buffer_cap) * self._max_steps()
            kept = torch.where(n != 0, kept.clamp(-cap, cap), kept)
        self._scatter(self.buffer[0], flat, kept)
        s = min(float(cell.tail_weightening) / N, 1.0)
        self._scatter(self.running_mean, flat, mean * (1.0 - s) + read * s)
        n = n * (counter > N).to(dev)[None, :, None]  # no write during the first N sweeps
        if bool((n != 0).any()):
            self._write(1, flat, n, float(cell.step) * devices.granularity(self.device_configs[1]),
                        cell.transfer_update)
        flip = (sample == N).to(dev).expand(G, -1)
        if cell.in_chop_random:
            flip = flip | (torch.rand(G, flat.numel()) < float(cell.in_chop_prob)).to(dev)
        self.in_chopper[:, flat_d] ^= flip
        self.in_chopper_switched[:, flat_d] = flip
        self.transfer_counter += self._last_read(idx).to(torch.int64)


# --------------------------------------------------------------------------
# MixedPrecisionCompound


class MixedPrecisionState(CellState):
    """``MixedPrecisionCompound``: the rank update accumulates in a digital
    matrix chi (chi += lr d x^T, x and d quantized when ``n_x_bins`` /
    ``n_d_bins`` > 0); every ``transfer_every`` batches ``n_rows_per_transfer``
    rows of chi are transferred to the device as n = trunc(chi / eps) pulses'
    worth (chi keeps the rest), eps the granularity."""

    def __init__(self, cell, geometry: TileGeometry, where: str, device=None):
        inner = cell.device
        if isinstance(inner, PulsedDevice):
            inner = VectorUnitCell(unit_cell_devices=[inner])
        CellState.__init__(self)
        self.cell = cell
        self.geometry = geometry
        self.inner = make_cell(inner, geometry, where, device)
        self.device_configs = self.inner.device_configs
        self.rules = self.inner.rules
        g = float(cell.granularity) if cell.granularity > 0 else self.inner.granularity
        self.granularity = g
        self.register_buffer("chi", torch.zeros(geometry.shape, device=device))
        self.register_buffer("update_count", torch.zeros((), dtype=torch.int64, device=device))
        self.register_buffer("row_index", torch.zeros(geometry.n_out, dtype=torch.int64, device=device))

    @property
    def weights(self) -> Tensor:
        return self.inner.weights

    def visible(self, cols: Optional[Tensor] = None) -> Tensor:
        return self.inner.visible(cols)

    def take_changed(self) -> Optional[Tensor]:
        return self.inner.take_changed()

    def mark_changed(self) -> None:
        self.inner.mark_changed()

    @torch.no_grad()
    def set_weights(self, tw: Tensor) -> None:
        self.inner.set_weights(tw)
        self.chi.zero_()
        self.update_count.zero_()
        self.row_index.zero_()

    def post_update(self) -> bool:
        return self.inner.post_update()

    def reset_columns(self, mask: Tensor) -> None:
        self.inner.reset_columns(mask)

    def extra_repr(self) -> str:
        return "MixedPrecisionCompound"

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, up: UpdateParameters) -> None:
        cell = self.cell
        geo = self.geometry
        x = _quantize(x.float(), int(cell.n_x_bins), bool(cell.stoc_round_x), geo.in_sizes)
        d = _quantize(d.float(), int(cell.n_d_bins), bool(cell.stoc_round_d), geo.out_sizes)
        rows = x.shape[1]
        every = int(cell.transfer_every) * rows
        count0 = int(self.update_count)
        # a transfer follows the row whose count (before it) is a positive multiple of `every`
        cuts = [r + 1 for r in range(rows) if every > 0 and count0 + r > 0 and (count0 + r) % every == 0]
        start = 0
        for stop in cuts + [rows]:
            if stop > start:
                self.chi.add_(torch.matmul(d[:, start:stop].transpose(1, 2), x[:, start:stop]), alpha=lr)
            if stop in cuts:
                self.transfer(up)
            start = stop
        self.update_count.add_(rows)

    @torch.no_grad()
    def transfer(self, up: UpdateParameters) -> None:
        """In every tile row (output piece), ``n_rows_per_transfer`` rows of
        chi (-1: all), from the piece's row index on (wrapping; a random start
        with ``random_row``), onto the device: row i by a pulsed update with
        x = n_i (the whole granules of the row), d = e_i and learning rate
        eps ``transfer_lr`` (the update's management forced on); chi_i -=
        n_i eps."""
        cell, geo = self.cell, self.geometry
        G, N, K = geo.shape
        if cell.n_rows_per_transfer == 0 or cell.transfer_lr == 0:
            return
        picked, offset = [], 0
        for o, size in enumerate(geo.out_sizes):
            n = size if cell.n_rows_per_transfer < 0 else min(int(cell.n_rows_per_transfer), size)
            i0 = int(self.row_index[o])
            if cell.random_row and n < size:
                i0 = min(int(math.floor(float(torch.rand(())) * size)), size - 1)
            picked.append(offset + (i0 + torch.arange(n)) % size)
            self.row_index[o] = (i0 + n) % size
            offset += size
        rows = torch.cat(picked).to(self.chi.device)
        eps = self.granularity
        chi = self.chi[:, rows]  # (G, n, K)
        counts = torch.trunc(chi / eps)
        self.chi[:, rows] = chi - counts * eps
        d = torch.nn.functional.one_hot(rows, N).float().expand(G, len(rows), N).contiguous()
        managed = copy.copy(up)
        managed.update_management = True
        managed.update_bl_management = True
        inner = self.inner
        if isinstance(inner, VectorState) and inner.cell.update_policy in (Policy.ALL, Policy.SINGLE_FIXED):
            # rows without a whole granule make no pulse and these policies keep no per-row state: skip them
            keep = (counts != 0).any(dim=2).any(dim=0)
            dropped = int((~keep).sum())
            counts, d = counts[:, keep], d[:, keep]
            inner.update_count.add_(dropped)
        inner.update(counts, d, eps * float(cell.transfer_lr), managed)


def _quantize(v: Tensor, bins: int, stochastic: bool, sizes: Sequence[int] = ()) -> Tensor:
    """Each row of ``v`` (G, B, L) to ``bins // 2`` steps each side of 0 of
    width max|row| / (bins // 2) (1 for a zero row), rounded to nearest
    (halves to even, as aihwkit's rintf) or stochastically; each piece of
    ``sizes`` (the lines of one tile) with its own maximum; ``bins`` 0:
    unchanged."""
    if bins <= 0:
        return v
    if len(sizes) > 1:
        return torch.cat([_quantize(p, bins, stochastic) for p in v.split(list(sizes), dim=-1)], dim=-1)
    half = float(bins // 2)
    width = v.abs().amax(dim=-1, keepdim=True) / half
    width = torch.where(width == 0, torch.ones_like(width), width)
    q = v / width
    if stochastic:
        q = q + torch.rand_like(q) - 0.5
    return torch.round(q).clamp(-half, half) * width
