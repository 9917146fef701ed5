"""``AnalogTile``: the tile array of one analog layer with its periphery, and
the one owner of its analog state.

An analog layer (``fxanalog.nn``) owns its digital parameters (``weight``,
``bias``: the model's own tensors, so ``state_dict`` keys stay those of the
digital model) and the shape logic of its kind (im2col for a convolution);
everything analog is its ``tile``:

* the config (``rpu_config``) and the tile geometry (``TileGeometry``);
* the digital periphery: the mapping scales (weight scaling, remapping), the
  drift compensation, the learned output scales and input ranges, and the
  one place where they are composed (``digital_scales``, ``output_scales``);
* the programmed state (conductances, drift exponents, the tile weights now)
  and its transitions: ``program``, ``drift``, ``clip_``, ``remap``,
  ``realistic_write``, ``read_weights``;
* the forward of the layer's matmul: one call of ``fxanalog::tile_mvm``
  (``forward``), with the weight modifier of hardware-aware training;
* the (x, d) of training steps, recorded by the op's backward
  (``record_updates``, ``recorded_updates``), and for pulsed-device configs
  (``SingleRPUConfig``) the devices' state (``device_state``: per-cross-point
  parameters drawn once) and the pulsed update with them (``update``,
  ``fxanalog::tile_update``), with the steps after it (decay, diffusion,
  write noise) and the reset; for unit cells (``UnitCellRPUConfig``,
  ``DigitalRankUpdateRPUConfig``) the cell's state and algorithm
  (``fxanalog.cells``), whose visible weight becomes the layer's.

The layer calls into its tile, handing it the weights as a ``(G, N, K)``
view of its parameter (``w`` below, digital units); the tile never calls
back into the layer. Tile units are digital units divided by the mapping
scales. State-dict keys of the tile are ``<layer>.tile.<name>``.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from fxanalog import devices, hwa, programming
from fxanalog.cells import CellState, DeviceState, is_cell, make_cell
from fxanalog.config import BaseNoiseModel, RPUConfigBase, WeightClipType, WeightRemapType, check_rpu_config
from fxanalog.config import config_from_dict, config_to_dict
from fxanalog.geometry import TileGeometry, fold_samples, per_output, piece_index, unfold_samples
from fxanalog.input_range import init_from_data_, input_range_config, input_range_mvm
from fxanalog.ops import tile_mvm as tile_mvm_op
from fxanalog.ops import tile_update as tile_update_op
from fxanalog.ops.io import TileIO
from fxanalog.ops.tile_mvm import NO_UPDATE, check_transforms, scripting_error
from fxanalog.ops.tile_mvm_torch import apply_digital, compute_dtype
from fxanalog.ops.tile_record import register_recorder
from fxanalog.ops.tile_update_torch import PulsedUpdate, pack_rule, pack_update

__all__ = ["AnalogTile", "PROGRAMMED_STATE", "with_bias_column", "write_weights"]

# Buffers of the programmed state (None until programmed; see ``program``).
PROGRAMMED_STATE = (
    "programmed_conductances",
    "drift_exponents",
    "conductance_scales",
    "drift_reference",
    "analog_weight",
    "drift_scales",
)
# Buffers that exist only in some states (taken from a state dict when there).
_OPTIONAL_BUFFERS = ("mapping_scales",) + PROGRAMMED_STATE


class AnalogTile(nn.Module):
    """The tile array of one weight matmul: ``geometry.groups`` groups of
    N x K weights cut into ``out_sizes`` x ``in_sizes`` tiles.

    Buffers (None until set, so only then in ``state_dict()``):
    ``mapping_scales`` (weight scaling and remapping) ``(1,)`` or ``(G*N,)``
    (one factor per output), or ``(G, N, n_in)`` (per tile, for tile arrays
    with several input pieces: one factor per output row and input piece;
    see ``reset_mapping_scales``); ``programmed_conductances`` and ``drift_exponents``
    ``(D, G, N, K)``, D devices per weight (g+ and g-: 2; ``2n`` with an
    n-pair converter); ``conductance_scales`` ``(G, n_out,
    n_in)`` (uS per tile unit of each tile); ``drift_reference`` ``(G, N)``;
    ``analog_weight`` ``(G, N, K)`` (the tile weights now, used in eval);
    ``drift_scales`` ``(G*N,)`` (the drift compensation, a digital factor);
    ``input_range_update_idx`` ``(G, n_in)`` (data initializations done).
    Parameters: ``out_scaling_alpha`` (``mapping.learn_out_scaling``),
    ``input_range`` ``(G, n_in)`` (``pre_post.input_range``).
    ``programming_report``: the closed-loop write's result.
    The shapes are checked when a checkpoint loads (``expected_shapes``,
    ``prepare_load``), and checkpoints carry the config
    (``checkpoint_metadata``; docs/tile.md, "Checkpoints").
    """

    def __init__(self, rpu_config: RPUConfigBase, geometry: TileGeometry, mapped: bool, *, device=None,
                 name: str = "AnalogTile", analog_bias: bool = False):
        super().__init__()
        self.rpu_config = copy.deepcopy(rpu_config)
        self.geometry = geometry
        self.mapped = mapped
        self.name = name
        # The last input column of every group holds the bias (mapping.digital_bias = False):
        # the layer drives it with a constant 1 (docs/tile.md, "Analog bias").
        self.analog_bias = analog_bias
        self.programming_report: Optional[dict] = None
        self.register_buffer("mapping_scales", None)
        for buffer in PROGRAMMED_STATE:
            self.register_buffer(buffer, None)
        self._tiles_cache: Optional[tuple] = None
        self._visible_written: Optional[tuple] = None  # a unit cell's layer weights as last written (ptr, version)
        self._io_cache: Optional[tuple] = None
        self._update_cache: Optional[tuple] = None
        self._update_key = NO_UPDATE
        self._recorded: list[tuple[Tensor, Tensor]] = []
        self.make_periphery(device)

    # -- config -------------------------------------------------------------

    def packed_io(self) -> tuple[list[float], list[float]]:
        """The forward and backward IOParameters, validated and packed for the
        op. Re-validated whenever a field changed since the last call, so a
        config mutated after conversion is checked at its next use. While
        torch.compile traces, the fields are packed without validation (the
        graph is guarded on them; eager calls and conversion validate)."""
        cfg = self.rpu_config
        fwd, bwd = cfg.forward, cfg.backward
        if torch.compiler.is_compiling():
            return TileIO.pack(fwd, validate=False), TileIO.pack(bwd, validate=False)
        snapshot = (type(cfg), tuple(fwd.__dict__.values()), tuple(bwd.__dict__.values()))
        if self._io_cache is None or self._io_cache[0] != snapshot:
            cfg.check_tile_config(f"{self.name}.rpu_config")
            self._io_cache = (snapshot, TileIO.pack(fwd), TileIO.pack(bwd))
        return self._io_cache[1], self._io_cache[2]

    def reader(self) -> programming.Reader:
        """How the programming and read algorithms run this tile's forward."""
        return programming.Reader(self.geometry, self.rpu_config.forward, self.packed_io())

    # -- weights ------------------------------------------------------------

    @property
    def _n_out(self) -> int:
        return self.geometry.shape[1]

    @property
    def per_piece_scales(self) -> bool:
        """The mapping scales differ between input pieces (per-tile weight
        scaling of a tile array with several input pieces): (G, N, n_in)."""
        return self.mapping_scales is not None and self.mapping_scales.dim() == 3

    def _weight_factor(self, dtype: torch.dtype) -> Tensor:
        """The mapping scales shaped to broadcast over (G, N, K) weights."""
        m = self.mapping_scales.to(dtype)
        if m.dim() == 3:  # (G, N, n_in): each input piece's columns get its factor
            return m.index_select(2, piece_index(self.geometry.in_sizes, m.device))
        return per_output(m, self._n_out, "weight")

    def to_tile_units(self, w: Tensor) -> Tensor:
        if self.mapping_scales is None:
            return w
        return w / self._weight_factor(w.dtype)

    def to_digital_units(self, t: Tensor) -> Tensor:
        if self.mapping_scales is None:
            return t
        return t * self._weight_factor(t.dtype)

    def tile_weight(self, w: Tensor) -> Tensor:
        """The weights on the devices, (G, N, K) tile units: in eval, once
        programmed, the programmed (or drifted) weights; else ``w`` in tile
        units (differentiable)."""
        if not self.training and self.analog_weight is not None:
            return self.analog_weight
        return self.to_tile_units(w)

    def tiles(self, w: Tensor, draws: int = 1) -> Tensor:
        """The tile array of a forward pass in the op's layout, (G, n_in,
        p_in, N) (``draws * G`` groups with ``draws > 1``): ``tile_weight``,
        with the weight modifier (``rpu_config.modifier``) in training (and
        in eval with ``enable_during_test``); the stored weights are not
        changed and the gradient passes straight through. Without a modifier
        the layout is a view of the weights when the pieces are even and
        nothing is scaled. The layout of the programmed weights (the tile's
        own ``analog_weight``, in eval without autograd) is cached while that
        tensor and its version are unchanged; the layer's weights are laid
        out anew at every call, since writes through ``weight.data`` do not
        bump a tensor's version (docs/tile.md, "The op")."""
        if self._modifier_acts():
            tw = self.tile_weight(w)
            if draws > 1:
                tw = tw.repeat(draws, 1, 1)
            mod = hwa.apply_weight_modifier(tw.detach(), self.rpu_config.modifier, self.geometry.in_sizes,
                                            self.geometry.out_sizes, getattr(self.rpu_config, "noise_model", None))
            return self.geometry.layout((tw + (mod.to(tw.dtype) - tw).detach()).float())
        src = self.analog_weight
        cacheable = (src is not None and not self.training and not torch.is_grad_enabled()
                     and not torch.compiler.is_compiling())
        if cacheable:  # the same tensor objects (not addresses, which memory reuses) at the same versions
            key = (src, src._version)
            c = self._tiles_cache
            if c is not None and c[0][0] is src and c[0][1] == key[1]:
                return c[1]
        tw = self.tile_weight(w)
        t = self.geometry.layout(tw.to(compute_dtype(tw.dtype)))
        if cacheable or self._tiles_cache is not None:  # (nn.Module's setattr is slow: not on every call)
            self._tiles_cache = (key, t) if cacheable else None
        return t

    def _modifier_acts(self) -> bool:
        modifier = getattr(self.rpu_config, "modifier", None)
        return (modifier is not None and (self.training or modifier.enable_during_test)
                and hwa.modifier_active(modifier))

    def digital_scales(self) -> Optional[Tensor]:
        """The fixed digital factor per output (the op's ``col_scale``): the
        mapping scales (unless per input piece: see ``piece_scales``), times
        the drift compensation in eval once drifted."""
        s = None if self.per_piece_scales else self.mapping_scales
        d = None if self.training else self.drift_scales
        if d is None:
            return s
        return d if s is None else s * d

    def piece_scales(self) -> Optional[Tensor]:
        """Per-tile weight scaling of several input pieces: the digital factor
        of each tile's output before the partial sums are added, (G, n_in, N);
        else None."""
        if not self.per_piece_scales:
            return None
        return self.mapping_scales.transpose(1, 2)

    def output_scales(self) -> Optional[Tensor]:
        """Every digital factor per output: ``digital_scales`` times the
        learned output scales (detached)."""
        s = self.digital_scales()
        a = None if self.out_scaling_alpha is None else self.out_scaling_alpha.detach()
        if a is None:
            return s
        return a if s is None else s.reshape(-1) * a.reshape(-1)

    def effective_weight(self, w: Tensor) -> Tensor:
        """The weights the tiles compute with, in digital units, (G, N, K):
        ``tile_weight`` times every digital output factor."""
        t = self.tile_weight(w).float()
        if self.per_piece_scales:
            t = self.to_digital_units(t)
        s = self.output_scales()
        return t if s is None else t * per_output(s.float(), self._n_out, "weight")

    def without_digital_scales(self, t: Tensor) -> Tensor:
        """The inverse of ``effective_weight``'s scaling: (G, N, K) digital
        weights to tile units, every digital output factor taken out."""
        s = self.output_scales()
        if s is not None:
            t = t / per_output(s.to(t.dtype), self._n_out, "weight")
        return self.to_tile_units(t) if self.per_piece_scales else t

    # -- compute ------------------------------------------------------------

    def __prepare_scriptable__(self):
        raise scripting_error(self.name)  # torch.jit.script calls this on every submodule

    def forward(self, x: Tensor, w: Tensor, bias: Optional[Tensor] = None, samples: int = 1) -> Tensor:
        """(G, B, K) inputs -> (G, B, N) outputs of the tile array, with the
        digital output scales and ``bias``. The B rows are ``samples``
        samples of ``B / samples`` consecutive rows each; with the
        modifier's ``per_batch_sample`` every sample gets its own perturbed
        weights."""
        check_transforms(self.name)  # torch.func's autodiff transforms: a clear error
        forward_io, backward_io = self.packed_io()
        G, N, K = self.geometry.shape
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.name}: input dtype {x.dtype}: expected a floating-point tensor")
        if x.dim() != 3 or x.shape[-1] != K or x.shape[0] != G:
            raise ValueError(
                f"{self.name}: input of shape {tuple(x.shape)}: expected (groups={G}, batch, {K}) "
                f"for a tile array of {K} inputs"
            )
        S = self._weight_draws(samples, x.shape[1])
        tiles = self.tiles(w, S)
        learn = self.out_scaling_alpha is not None
        col = self.digital_scales()
        op_bias = None if (bias is None or learn) else bias
        ir_cfg = input_range_config(self.rpu_config)
        pieces = self.piece_scales()
        if ir_cfg is not None or pieces is not None:  # each input piece its own group of the op
            ir = None if ir_cfg is None else self._checked_input_range(x)
            y = input_range_mvm(x, tiles, ir, self.geometry, ir_cfg, self.rpu_config.forward,
                                (forward_io, backward_io), samples=S, piece_scale=pieces)
            y = apply_digital(y, col, op_bias).to(x.dtype)
        else:
            y = tile_mvm_op.mvm(fold_samples(x, S), tiles, list(self.geometry.in_sizes),
                                list(self.geometry.out_sizes), _repeat_groups(col, S),
                                _repeat_groups(op_bias, S), forward_io, backward_io, self._update_key)
            y = unfold_samples(y, S)
        if learn:
            y = y * per_output(self.out_scaling_alpha.to(y.dtype), N, "result")
            if bias is not None:
                y = y + bias.to(y.dtype).reshape(G, 1, N)
        return y

    def _weight_draws(self, samples: int, rows: int) -> int:
        """How many perturbed weight sets a forward pass draws: ``samples``
        with the modifier's ``per_batch_sample`` (when the modifier acts),
        else 1."""
        if samples <= 1 or not self._modifier_acts() or not self.rpu_config.modifier.per_batch_sample:
            return 1
        if rows % samples:
            raise ValueError(f"{self.name}: {rows} input rows are not {samples} samples of equal size")
        return samples

    def _checked_input_range(self, x: Tensor) -> Tensor:
        ir = self.input_range
        expected = (self.geometry.groups, self.geometry.n_in)
        if ir is None or tuple(ir.shape) != expected:
            raise ValueError(
                f"{self.name}: rpu_config.pre_post.input_range.enable = True but the tile has "
                f"{'no input range' if ir is None else f'an input range of shape {tuple(ir.shape)}'}; expected "
                f"{expected}: enable it in the config before converting the model"
            )
        if self.training and not self._input_range_init_done:
            cfg = input_range_config(self.rpu_config)
            self._input_range_init_done = cfg.init_from_data <= 0 or init_from_data_(
                ir, self.input_range_update_idx, x, self.geometry.in_sizes, cfg)
        # Checked where it costs no host-device sync (CPU tensors, eager).
        if ir.device.type == "cpu" and not torch.compiler.is_compiling() and not bool((ir > 0).all()):
            raise ValueError(
                f"{self.name}.input_range = {ir.detach().flatten().tolist()}: every range must be > 0 "
                "(a too large learning rate on the input range?)"
            )
        return ir

    # -- mapping and periphery state ---------------------------------------------

    @torch.no_grad()
    def reset_mapping_scales(self, w: Tensor, weight_scaling_omega: Optional[float] = None) -> None:
        """Weight scaling (``mapping.weight_scaling_omega``), per tile as in
        aihwkit's tile arrays: each tile holds its weights W_t divided by
        alpha_t = max|W_t|/omega (per output row of the tile when
        columnwise), and alpha_t multiplies that tile's output in digital,
        before the partial sums over input pieces are added. Stored per
        output, ``(1,)`` or ``(G*N,)``, when the layer has one input piece,
        else ``(G, N, n_in)``. Tiles on pulsed devices (``SingleRPUConfig``)
        keep one factor per layer (per output when columnwise): their pulsed
        update takes one learning rate for the whole array. The max is over
        the finite weights: an infinite or NaN weight spoils its own outputs
        only, as digitally (docs/tile.md, "Mapping a layer onto tiles").
        ``weight_scaling_omega`` given: that omega instead of the config's."""
        m = self.rpu_config.mapping
        omega = m.weight_scaling_omega if weight_scaling_omega is None else weight_scaling_omega
        if isinstance(omega, bool) or not isinstance(omega, (int, float)) or not 0 <= omega < float("inf"):
            raise ValueError(f"{self.name}: weight_scaling_omega = {omega!r}: expected a finite number >= 0")
        if omega <= 0:
            self.mapping_scales = None
            self.invalidate_cache()
            return
        wf = w.detach().float().abs()
        wf = torch.where(torch.isfinite(wf), wf, torch.zeros_like(wf))
        geo = self.geometry
        if self.device_state is not None or geo.single:
            amax = wf.amax(dim=-1).reshape(-1) if m.weight_scaling_columnwise else wf.amax().reshape(1)
        elif m.weight_scaling_columnwise:  # each row of each tile: (G, N, n_in)
            amax = torch.stack([p.amax(dim=-1) for p in wf.split(list(geo.in_sizes), dim=2)], dim=-1)
        else:  # each tile: (G, n_out, n_in), spread over its rows
            amax = geo.tile_amax(wf).repeat_interleave(
                torch.tensor(list(geo.out_sizes), device=wf.device), dim=1)
        if amax.dim() == 3 and geo.n_in == 1:
            amax = amax.reshape(-1)  # one input piece: a factor per output
        alpha = amax / omega
        self.mapping_scales = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        self.invalidate_cache()

    @torch.no_grad()
    def reset_input_range(self, device=None) -> None:
        """The learned input range (``rpu_config.pre_post.input_range``): a
        parameter ``input_range`` of one range per (group, input piece), at
        ``init_value``, and its count of data initializations
        ``input_range_update_idx``; both None when the config does not enable it."""
        self._input_range_init_done = False  # set once every piece had its init_from_data batches
        cfg = input_range_config(self.rpu_config)
        if cfg is None:
            self.input_range = None
            self.register_buffer("input_range_update_idx", None)
            return
        shape = (self.geometry.groups, self.geometry.n_in)
        self.input_range = nn.Parameter(torch.full(shape, float(cfg.init_value), device=device),
                                        requires_grad=cfg.learn_input_range)
        self.register_buffer("input_range_update_idx", torch.zeros(shape, dtype=torch.long, device=device))

    def invalidate_cache(self) -> None:
        """Forget the cached tile array (after the weights were written behind
        autograd's back, e.g. through ``weight.data``)."""
        if self._tiles_cache is not None:  # (nn.Module's setattr is slow: not after every step)
            self._tiles_cache = None

    def reset(self, w: Tensor, weight_scaling_omega: Optional[float] = None, keep_mapping_scales: bool = False) -> None:
        """New digital weights ``w``: the programmed state goes, the mapping
        scales are computed anew (with ``weight_scaling_omega`` when given,
        else the config's; kept as they are with ``keep_mapping_scales``);
        on pulsed devices the weights are clipped
        to every cross-point's bounds (written back into ``w``), as a chip's
        devices can only hold what their range allows."""
        self.clear_programmed_state()
        if not keep_mapping_scales:
            self.reset_mapping_scales(w, weight_scaling_omega)
        st = self.device_state
        if st is not None and (isinstance(st, CellState) or st.rule.pulsed):
            self._set_device_weights(w, self.to_tile_units(w.detach()).float(), write_noise=True)

    @torch.no_grad()
    def _set_device_weights(self, w: Tensor, tw: Tensor, write_noise: bool, where: Optional[Tensor] = None) -> None:
        """Tile-unit weights ``tw`` onto the devices: clipped to the bounds,
        kept as the hidden weights with write noise (the visible ones drawn
        around them, where ``where`` when given), written into ``w``."""
        st = self.device_state
        if isinstance(st, CellState):  # the cell's rule; the layer sees its visible weight
            st.set_weights(tw)
            self._write_visible(w)
            return
        if st.rule.pulsed:
            tw = torch.minimum(torch.maximum(tw, st.b_min), st.b_max)
        if st.rule.write_noise > 0:
            st.persistent_weight.copy_(tw)
            dev_cfg = self.rpu_config.device
            if write_noise and getattr(dev_cfg, "apply_write_noise_on_set", True):
                noisy = tw + st.rule.write_noise * torch.randn_like(tw)
                tw = noisy if where is None else torch.where(where, noisy, self.to_tile_units(w.detach()).float())
        w.copy_(self.to_digital_units(tw).to(w.dtype))
        self.invalidate_cache()

    # -- pulsed training ------------------------------------------------------------

    def _write_visible(self, w: Tensor, cols: Optional[Tensor] = None) -> None:
        """A unit cell's visible weight into the layer's weights ``w`` (only
        the columns ``cols``, when given: those an update changed)."""
        st = self.device_state
        if cols is None or self._visible_written != (w.data_ptr(), w._version):  # whole (or written elsewhere)
            w.copy_(self.to_digital_units(st.visible()).to(w.dtype))
        elif cols.numel():
            cols = cols.to(w.device)
            t = st.visible(cols)
            if self.mapping_scales is not None:
                f = self._weight_factor(t.dtype)
                t = t * (f[..., cols] if f.dim() == 3 and f.shape[-1] != 1 else f)
            w[..., cols] = t.to(w.dtype)
        self._visible_written = (w.data_ptr(), w._version)
        self.invalidate_cache()

    def _check_pulsed(self, what: str) -> None:
        if self.device_state is None:
            raise ValueError(f"{what}: layer {self.name!r} has a {type(self.rpu_config).__name__}, whose tiles "
                             "have no devices to pulse; pulsed training needs a SingleRPUConfig")

    @torch.no_grad()
    def update(self, w: Tensor, lr: float) -> bool:
        """The pulsed update of the tile with the (x, d) recorded since the
        last update (``recorded_updates``; several backward passes
        concatenated), scaled by the learning rate ``lr``: the devices move
        by pulses (``fxanalog::tile_update``) and the result is written into
        ``w`` (the layer's weights). Returns False when nothing was recorded."""
        self._check_pulsed("update")
        rec = self.recorded_updates()
        if rec is None:
            return False
        x, d = rec
        if self.mapping_scales is not None:
            # d is the gradient of the tile output (alpha g, alpha the mapping
            # scale); the devices move by the digital update over alpha:
            # -lr g x^T / alpha, so an exact device follows SGD on the
            # layer's weights (aihwkit's pre_update).
            d = d / per_output(self.mapping_scales.to(d.dtype), self._n_out, "result").square()
        st = self.device_state
        if isinstance(st, CellState):  # the cell's algorithm (fxanalog.cells; docs/unit-cells.md, tiki-taka.md, mixed-precision.md)
            pending = st.take_changed()  # None: a whole write is due
            st.update(x.float(), d.float(), float(lr), self.rpu_config.update)
            changed = st.take_changed()
            self._write_visible(w, None if pending is None else changed)
            return True
        packed_update, packed_rule = self._packed_update(st)
        hidden = st.rule.write_noise > 0
        # the devices' weights are the layer's own when they are in the same units and float32: updated in place
        direct = not hidden and self.mapping_scales is None and w.dtype == torch.float32 and w.is_contiguous()
        if hidden:
            tw = st.persistent_weight
        else:
            tw = w.detach() if direct else self.to_tile_units(w.detach()).float().clone()
        touched = tile_update_op.update(
            tw, x.float(), d.float(), st.params, float(lr), packed_update, packed_rule,
            list(self.geometry.in_sizes), list(self.geometry.out_sizes))
        if hidden:  # the visible weights: hidden ones plus fresh write noise where pulsed
            noisy = tw + st.rule.write_noise * torch.randn_like(tw)
            tw = torch.where(touched, noisy, self.to_tile_units(w.detach()).float())
        if not direct:
            w.copy_(self.to_digital_units(tw).to(w.dtype))
        self.invalidate_cache()
        return True

    def _packed_update(self, st: DeviceState) -> tuple[list[float], list[float]]:
        """``rpu_config.update`` (with the device's weight granularity) and the
        device rule packed for ``fxanalog::tile_update``; packed again
        whenever a field of the update or device config changed (as
        ``packed_io``)."""
        cfg = self.rpu_config
        snapshot = (tuple(cfg.update.__dict__.values()), tuple(cfg.device.__dict__.values()), st.rule)
        c = self._update_cache
        if c is None or c[0] != snapshot:
            up = PulsedUpdate.of(cfg.update, devices.granularity(cfg.device))
            c = self._update_cache = (snapshot, pack_update(up), pack_rule(st.rule))
        return c[1], c[2]

    @torch.no_grad()
    def _device_post_update(self, w: Tensor) -> None:
        """Decay (``lifetime``) and diffusion (``diffusion``) of the devices,
        once per update, then the write noise drawn anew everywhere."""
        st = self.device_state
        if isinstance(st, CellState):
            if st.post_update():
                self._write_visible(w)
            return
        dev_cfg = self.rpu_config.device
        decay, diffuse = dev_cfg.lifetime > 0, dev_cfg.diffusion > 0
        if not (decay or diffuse):
            return
        hidden = st.rule.write_noise > 0
        tw = st.persistent_weight if hidden else self.to_tile_units(w.detach()).float().clone()
        state = st.tensors()
        if decay:
            devices.decay_(tw, state)
        if diffuse:
            devices.diffuse_(tw, state)
        self._set_device_weights(w, tw.clone(), write_noise=True)

    @torch.no_grad()
    def reset_columns(self, w: Tensor, start_column_idx: int = 0, num_columns: int = 1,
                      reset_prob: float = 1.0) -> None:
        """aihwkit's reset: the devices of ``num_columns`` inputs from
        ``start_column_idx`` (wrapping around; -1: all) go, each with
        probability ``reset_prob``, to ``reset_bias + reset_std xi`` (clipped
        to their bounds)."""
        self._check_pulsed("reset_columns")
        G, N, K = self.geometry.shape
        if num_columns < 0:
            num_columns = K
        cols = (torch.arange(num_columns, device=w.device) + start_column_idx) % K
        mask = torch.zeros((G, N, K), dtype=torch.bool, device=w.device)
        mask[:, :, cols] = True
        if reset_prob < 1:
            mask &= torch.rand(mask.shape, device=w.device) < reset_prob
        st = self.device_state
        if isinstance(st, CellState):
            st.reset_columns(mask)
            self._write_visible(w)
            return
        tw = (st.persistent_weight if st.rule.write_noise > 0 else self.to_tile_units(w.detach()).float()).clone()
        devices.reset_(tw, st.tensors(), float(self.rpu_config.device.reset_std), mask)
        self._set_device_weights(w, tw, write_noise=True)

    # -- programming and drift ----------------------------------------------------

    def clear_programmed_state(self) -> None:
        """Forget the programmed state (back to the digital weights in eval)."""
        for buffer in PROGRAMMED_STATE:
            setattr(self, buffer, None)
        self.invalidate_cache()

    def set_noise_model(self, noise_model) -> None:
        """A noise model in place of the config's (``program_analog_weights(
        noise_model)``, as in aihwkit); the programmed state goes."""
        if not hasattr(self.rpu_config, "noise_model"):
            raise ValueError(f"program_analog_weights: layer {self.name!r} has a {type(self.rpu_config).__name__}, "
                             "which has no noise model to replace")
        if not isinstance(noise_model, BaseNoiseModel):
            raise TypeError(f"program_analog_weights: noise_model = {noise_model!r}: expected a noise model "
                            "(e.g. fxanalog.PCMLikeNoiseModel())")
        self.rpu_config.noise_model = copy.deepcopy(noise_model)
        self.clear_programmed_state()

    def check_deployed(self, what: str) -> None:
        if self.training:
            raise ValueError(f"{what}: layer {self.name!r} is in training mode; programming and drift act "
                             "on a deployed model: call model.eval() first")

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        """Program the weights ``w`` onto the tiles (eval mode): draw the
        programming noise and drift exponents of all devices once and keep
        them, with the drift-compensation reference. A tile without a noise
        model (``FloatingPointRPUConfig``) is left as it is."""
        self.check_deployed("program_analog_weights")
        nm = getattr(self.rpu_config, "noise_model", None)
        if nm is None:
            return
        self.rpu_config.check_tile_config(f"{self.name}.rpu_config")
        comp = getattr(self.rpu_config, "drift_compensation", None)
        state = programming.program(self.reader(), nm, comp, self.to_tile_units(w.detach()).float())
        self.programmed_conductances = state.conductances
        self.drift_exponents = state.drift_exponents
        self.conductance_scales = state.conductance_scales
        self.analog_weight = state.weight
        self.drift_reference = state.drift_reference
        self.drift_scales = None
        self.invalidate_cache()

    @torch.no_grad()
    def drift(self, w: Tensor, t_inference: float) -> None:
        """Set the tiles to their state ``t_inference`` seconds after
        programming (eval mode): drift and 1/f read noise, recomputed from
        the programmed state (not cumulative), then the drift compensation.
        Programs first when not programmed yet."""
        self.check_deployed("drift_analog_weights")
        if isinstance(t_inference, bool) or not isinstance(t_inference, (int, float)) or not t_inference >= 0:
            raise ValueError(f"drift_analog_weights: t_inference = {t_inference!r}: expected seconds >= 0")
        nm = getattr(self.rpu_config, "noise_model", None)
        if nm is None:
            return
        if self.programmed_conductances is None:
            self.program(w)
        self.rpu_config.check_tile_config(f"{self.name}.rpu_config")
        state = programming.ProgrammedState(self.programmed_conductances, self.drift_exponents,
                                            self.conductance_scales, self.analog_weight, self.drift_reference)
        self.analog_weight = programming.drift(nm, self.geometry, state, float(t_inference))
        comp = getattr(self.rpu_config, "drift_compensation", None)
        if comp is not None and self.drift_reference is not None:
            self.drift_scales = programming.compensation(self.reader(), comp, self.analog_weight,
                                                         self.drift_reference).reshape(-1)
        else:
            self.drift_scales = None
        self.invalidate_cache()

    # -- after optimizer steps ----------------------------------------------------

    @torch.no_grad()
    def clip_(self, w: Tensor) -> None:
        """Clip the tile weights per tile as ``rpu_config.clip`` says, writing
        the result into ``w`` (the layer's weights, digital units)."""
        clip = getattr(self.rpu_config, "clip", None)
        if clip is None or clip.type == WeightClipType.NONE:
            return
        clip.validate(f"{self.name}.rpu_config.clip")
        t = self.to_tile_units(w.detach()).float()
        bound = hwa.clip_bound(t, clip, self.geometry)
        write_weights(w, self.to_digital_units(torch.maximum(torch.minimum(t, bound), -bound)).to(w.dtype))
        self.invalidate_cache()

    @torch.no_grad()
    def remap(self, w: Tensor) -> None:
        """Remap the tile weights as ``rpu_config.remap`` says:
        LAYERWISE_SYMMETRIC divides them by ``s = max|w| / remapped_wmax``,
        CHANNELWISE_SYMMETRIC each output row by its own ``s``; ``s`` goes
        into the mapping scales, so the effective weights do not change."""
        remap = getattr(self.rpu_config, "remap", None)
        if remap is None or remap.type == WeightRemapType.NONE:
            return
        where = f"{self.name}.rpu_config.remap"
        remap.validate(where)
        if remap.max_scale_range != 0 or remap.max_scale_ref != 0:
            raise ValueError(
                f"{where}: max_scale_range = {remap.max_scale_range!r}, max_scale_ref = "
                f"{remap.max_scale_ref!r}: limits on the remapping scales are not supported; expected 0.0"
            )
        t = self.to_tile_units(w.detach()).float()
        m = t.abs().amax().reshape(1) if remap.type == WeightRemapType.LAYERWISE_SYMMETRIC else \
            t.abs().amax(dim=-1).reshape(-1)
        s = m / remap.remapped_wmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        old = self.mapping_scales
        if old is not None and old.dim() == 3:  # per input piece: s per output broadcast over the pieces
            s = s.reshape(-1, 1) if s.numel() == 1 else s.reshape(old.shape[0], old.shape[1], 1)
        self.mapping_scales = s if old is None else old.float() * s
        self.invalidate_cache()

    def post_update_step(self, w: Tensor) -> None:
        """What follows an optimizer step: clipping, then remapping; on
        devices, decay and diffusion."""
        self.clip_(w)
        self.remap(w)
        if self.device_state is not None:
            self._device_post_update(w)

    # -- realistic write and read ---------------------------------------------------

    @torch.no_grad()
    def realistic_write(self, w: Tensor, tolerance: float = 0.01, max_iterations: int = 100,
                        probe: str = "auto") -> dict:
        """Write the weights ``w`` by closed-loop programming
        (``programming.closed_loop_write``; ``probe``: how its verify reads
        are computed, ``programming.probe_read``): the written weights replace
        ``w`` (the programmed state is cleared). On pulsed devices every
        write is a pulsed update towards the target. Returns the report
        ``{"iterations", "error"}``, also kept as ``programming_report``."""
        target = self.to_tile_units(w.detach()).float()
        st = self.device_state
        if isinstance(st, CellState):
            raise ValueError(f"realistic_write: layer {self.name!r} has a {type(self.rpu_config.device).__name__} "
                             "unit cell: the closed-loop write of unit cells is not supported (write its weights "
                             "with set_weights)")
        if st is not None and st.rule.pulsed:  # program and verify by pulses
            bounds = (st.b_min, st.b_max)
            target = torch.minimum(torch.maximum(target, st.b_min), st.b_max)
            written, report = programming.closed_loop_write(self.reader(), self._pulsed_write, target, tolerance,
                                                            max_iterations, bounds, probe)
            self.clear_programmed_state()
            self._set_device_weights(w, written, write_noise=True)
        else:
            step = programming.write_step(self.rpu_config, f"layer {self.name!r}")
            written, report = programming.closed_loop_write(
                self.reader(), lambda w_cur, w_new, w_max: step(self.rpu_config, w_new, w_max), target, tolerance,
                max_iterations, probe=probe)
            self.clear_programmed_state()
            write_weights(w, self.to_digital_units(written).to(w.dtype))
        self.programming_report = report
        return report

    def _pulsed_write(self, w_cur: Tensor, w_new: Tensor, w_max: Tensor) -> Tensor:
        """One write of a closed loop on pulsed devices: a pulsed update with
        one row per input, x the unit vector of input j and d the column's
        error ``w_cur - w_new`` (learning rate 1), so the devices move by
        pulses towards ``w_new`` (as aihwkit writes by updates)."""
        G, N, K = w_cur.shape
        x = torch.eye(K, device=w_cur.device).expand(G, K, K).contiguous()
        d = (w_cur - w_new).transpose(1, 2).contiguous()  # (G, K rows, N)
        st = self.device_state
        w = w_cur.clone()
        tile_update_op.update(w, x, d, st.params, 1.0, *self._packed_update(st), list(self.geometry.in_sizes),
                              list(self.geometry.out_sizes))
        return w

    @torch.no_grad()
    def read_weights(self, w: Tensor) -> Tensor:
        """The effective weights (G, N, K), digital units, estimated from
        noisy forward passes of the tiles as a chip is read out
        (``programming.least_squares_read``), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            col = self.digital_scales()
            pieces = self.piece_scales()
            if pieces is not None:  # each tile's own factor, (G, n_in, N)
                col = pieces if col is None else pieces * per_output(col.float(), self._n_out, "result")
            est = programming.least_squares_read(self.reader(), self.tile_weight(w).detach().float(), col)
        finally:
            self.train(was_training)
        if self.out_scaling_alpha is not None:
            est = est * per_output(self.out_scaling_alpha.detach().float(), self._n_out, "weight")
        return est

    # -- training: the (x, d) of each step ------------------------------------------

    def record_updates(self, enable: bool = True) -> None:
        """Record the (x, d) of every training forward/backward of this tile
        (``recorded_updates``): the op's raw input x (G, B, K) and the
        gradient d (G, B, N) of the tile output, handed over by the op's
        backward through ``fxanalog::tile_record`` (docs/architecture.md)."""
        if enable and self._update_key == NO_UPDATE:
            self._update_key = register_recorder(self._record)
        elif not enable:
            self._update_key = NO_UPDATE
            self._recorded.clear()

    def _record(self, x: Tensor, d: Tensor) -> None:
        self._recorded.append((x, d))

    def recorded_updates(self) -> Optional[tuple[Tensor, Tensor]]:
        """The (x, d) recorded since the last call, the batches of several
        backward passes concatenated in order: (G, B_total, K) and
        (G, B_total, N); None when nothing was recorded. Forgets them."""
        if not self._recorded:
            return None
        xs, ds = zip(*self._recorded)
        self._recorded.clear()
        if len(xs) == 1:  # one backward pass: its tensors as they are
            return xs[0], ds[0]
        return torch.cat(xs, dim=1), torch.cat(ds, dim=1)

    # -- state dict --------------------------------------------------------------

    def checkpoint_metadata(self) -> Optional[dict]:
        """What a checkpoint carries about this tile, as plain data (loadable
        with ``torch.load(weights_only=True)``): the config
        (``config_to_dict``) and the tile split. None when the config holds a
        value that is not plain data (such a checkpoint loads unchecked)."""
        try:
            cfg = config_to_dict(self.rpu_config)
        except TypeError:
            return None
        g = self.geometry
        return {"rpu_config": cfg, "groups": g.groups, "in_sizes": list(g.in_sizes), "out_sizes": list(g.out_sizes)}

    def expected_shapes(self) -> dict[str, list[tuple]]:
        """The shapes each optional buffer may have in this tile, by name; a
        name that is absent cannot be held (the programmed state of a tile
        without a noise model)."""
        G, N, K = self.geometry.shape
        n_in, n_out = self.geometry.n_in, self.geometry.n_out
        scales = [(1,), (G * N,)]
        if n_in > 1 and self.device_state is None:
            scales.append((G, N, n_in))
        out = {"mapping_scales": scales}
        nm = getattr(self.rpu_config, "noise_model", None)
        if nm is not None:
            # devices per weight: 2 for a pair, 2 n for n pairs, whatever a custom converter makes
            d = nm.converter.convert_to_conductances(torch.zeros(1, 1, 1), torch.ones(1, 1, 1))[0].shape[0]
            out.update(programmed_conductances=[(d, G, N, K)], drift_exponents=[(d, G, N, K)],
                       conductance_scales=[(G, n_out, n_in)], drift_reference=[(G, N)], analog_weight=[(G, N, K)],
                       drift_scales=[(G * N,)])
        return out

    def check_checkpoint(self, meta: Optional[dict], load_rpu_config: Optional[bool],
                         strict_rpu_config_check: Optional[bool], layer: Optional[str] = None) -> list[str]:
        """Compare a checkpoint's ``checkpoint_metadata`` with this tile
        (docs/tile.md, "Checkpoints"). ``load_rpu_config`` None: the configs
        and the tile split must be the same; True: the checkpoint's config
        replaces this tile's (the split must be the same); False: this tile
        keeps its config (of the same class unless ``strict_rpu_config_check``
        is False). ``layer``: its name in the model (the state-dict path).
        Returns the error messages (empty when it loads)."""
        where = f"layer {(layer or self.name)!r}"
        if meta is None:  # a digital checkpoint, or one saved without the config
            return []
        if not (isinstance(meta, dict) and isinstance(meta.get("rpu_config"), dict)
                and all(k in meta for k in ("groups", "in_sizes", "out_sizes"))):
            return [f"{where}: the checkpoint's fxanalog metadata is not readable ({meta!r:.200}); expected "
                    "the rpu_config and tile split that AnalogLayerBase.state_dict() saves"]
        mine = self.checkpoint_metadata()
        split = [f"{k}: checkpoint {meta.get(k)!r}, this model {mine[k]!r}"
                 for k in ("groups", "in_sizes", "out_sizes") if meta.get(k) != mine[k]]
        if load_rpu_config is False:
            theirs = meta["rpu_config"].get("class")
            if strict_rpu_config_check is not False and theirs != type(self.rpu_config).__name__:
                return [f"{where}: the checkpoint's rpu_config is a {theirs}, this layer's a "
                        f"{type(self.rpu_config).__name__} (load_rpu_config=False keeps the layer's config, of the "
                        "same class unless strict_rpu_config_check=False)"]
            return []
        if load_rpu_config:
            if split:
                return [f"{where}: the checkpoint's tiles are split differently ({'; '.join(split)}); "
                        "load_rpu_config=True replaces the config, not the split: convert the model with the "
                        "checkpoint's mapping (convert_to_analog vs convert_to_analog_mapped, max_input_size, "
                        "max_output_size, digital_bias: an analog bias is one more tile input)"]
            try:
                self.replace_rpu_config(config_from_dict(meta["rpu_config"]))
            except (ValueError, TypeError, KeyError) as exc:
                return [f"{where}: the checkpoint's rpu_config cannot be used: {exc}"]
            return []
        diffs = split + _differences(meta["rpu_config"], mine["rpu_config"])
        if not diffs:
            return []
        return [f"{where}: the checkpoint was saved with another rpu_config or mapping: " + "; ".join(diffs)
                + ". Pass load_rpu_config=True to take the checkpoint's config, or False to keep this model's "
                "(fxanalog.nn.load_state_dict, or the load_state_dict of an analog layer or AnalogSequential)"]

    def make_periphery(self, device=None) -> None:
        """The parts of the tile its config implies, made anew: the learned
        output scales (``mapping.learn_out_scaling``), the input range, the
        devices of pulsed configs and the recording of training steps."""
        m = self.rpu_config.mapping
        self.out_scaling_alpha: Optional[nn.Parameter] = None
        if m.learn_out_scaling:
            size = self.geometry.groups * self._n_out if m.out_scaling_columnwise else 1
            self.out_scaling_alpha = nn.Parameter(torch.ones(size, device=device))
        self.record_updates(bool(getattr(self.rpu_config, "records_updates", False)))  # pulsed training's configs
        self.reset_input_range(device)
        self.device_state: Optional[DeviceState | CellState] = None
        dev_cfg = getattr(self.rpu_config, "device", None)
        if self.analog_bias:
            self._check_analog_bias(dev_cfg)
        if dev_cfg is not None:
            if input_range_config(self.rpu_config) is not None:
                raise ValueError(
                    f"{self.name}: rpu_config.pre_post.input_range.enable = True with a "
                    f"{type(self.rpu_config).__name__}: the pulsed update of tiles with a learned input range is "
                    "not supported; disable the input range"
                )
            if is_cell(dev_cfg):
                self.device_state = make_cell(dev_cfg, self.geometry, f"{self.name}.rpu_config", device)
            else:
                self.device_state = DeviceState(dev_cfg, self.geometry.shape, device)

    def _check_analog_bias(self, dev_cfg) -> None:
        """What a tile holding the bias column cannot be (docs/tile.md, "Analog bias")."""
        cls = type(self.rpu_config).__name__
        if self.rpu_config.mapping.digital_bias:
            raise ValueError(f"{self.name}: rpu_config.mapping.digital_bias = True, but the tile holds the bias "
                             "column (made with digital_bias = False): expected digital_bias = False")
        if dev_cfg is not None:
            raise ValueError(
                f"{self.name}: rpu_config.mapping.digital_bias = False with a {cls}: analog bias on pulsed "
                "devices (the pulsed update of the bias column) is not supported; use digital_bias = True")
        if input_range_config(self.rpu_config) is not None:
            raise ValueError(
                f"{self.name}: rpu_config.mapping.digital_bias = False with pre_post.input_range.enable = True: "
                "the learned input range of the piece holding the bias column is not supported; use "
                "digital_bias = True or disable the input range")

    def replace_rpu_config(self, rpu_config: RPUConfigBase) -> None:
        """A new config for this tile (same split): the periphery it implies
        is made anew (``make_periphery``); the programmed state and mapping
        scales are kept (a checkpoint loads them next)."""
        check_rpu_config(rpu_config, f"{self.name}.rpu_config")
        device = self.mapping_scales.device if self.mapping_scales is not None else None
        old = self.rpu_config
        self.rpu_config = copy.deepcopy(rpu_config)
        try:
            self.make_periphery(device)
        except ValueError:
            self.rpu_config = old
            self.make_periphery(device)
            raise
        self._io_cache = self._update_cache = None
        self.invalidate_cache()

    def prepare_load(self, state_dict: dict, prefix: str, replace: bool, device, error_msgs: list) -> bool:
        """Before loading: the optional buffers (the programmed state, the
        mapping scales) exist only in some states; make those the state
        dict holds (``prefix`` + name) ready to receive them on ``device``,
        and with ``replace`` (the layer's weights are loaded too) drop those
        it lacks. A buffer of a shape this tile cannot have is torch's
        "size mismatch" error; programmed state that this tile cannot hold
        (no noise model) is an error too, whatever ``strict`` (it would be
        dropped). Nothing changes when there is an error (returns False)."""
        self._input_range_init_done = False  # the loaded counts decide anew
        allowed = self.expected_shapes()
        errors = []
        for buffer in _OPTIONAL_BUFFERS:
            key = prefix + buffer
            if key not in state_dict:
                continue
            shape = tuple(state_dict[key].shape)
            if buffer not in allowed:
                errors.append(f"{key}: the checkpoint holds programmed state, but layer {self.name!r} has a "
                              f"{type(self.rpu_config).__name__} without a noise model to hold it (it would be "
                              "dropped); load it into a model converted with the checkpoint's config")
            elif shape not in allowed[buffer]:
                want = " or ".join(str(torch.Size(s)) for s in allowed[buffer])
                errors.append(f"size mismatch for {key}: copying a param with shape {torch.Size(shape)} from "
                              f"checkpoint, the shape in current model is {want}.")
        known = set(self.state_dict(keep_vars=True)) | set(_OPTIONAL_BUFFERS)
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix):] not in known:
                errors.append(f"{key}: layer {self.name!r} (a {type(self.rpu_config).__name__}) has no such state "
                              "(it would be dropped); load it into a model converted with the checkpoint's config")
        if errors:
            error_msgs.extend(errors)
            self.skip_next_load()
            return False
        for buffer in _OPTIONAL_BUFFERS:
            key = prefix + buffer
            if key in state_dict:
                setattr(self, buffer, torch.empty_like(state_dict[key], device=device))
            elif replace:
                setattr(self, buffer, None)
        self.invalidate_cache()
        return True

    def skip_next_load(self) -> None:
        """The next load leaves this tile as it is (its keys neither loaded
        nor reported missing): the layer found the checkpoint unfit."""
        self._skip_load = True
        if self.device_state is not None:
            self.device_state.skip_next_load()

    def _load_from_state_dict(self, state_dict, prefix, *args):
        if self.__dict__.pop("_skip_load", False):
            return
        super()._load_from_state_dict(state_dict, prefix, *args)
        w = self.__dict__.pop("_loaded_weights", None)
        if w is not None and not any(prefix + b in state_dict for b in _OPTIONAL_BUFFERS):
            # a checkpoint without mapping scales and programmed state (a digital one):
            # the mapping scales from the loaded weights, as the config says
            self.reset_mapping_scales(w)

    def weights_loaded(self, w: Tensor) -> None:
        """The layer's weights ``w`` were loaded from a checkpoint: if the
        tile's part of it has no mapping scales and no programmed state,
        the mapping scales are computed from ``w`` when the tile loads."""
        self._loaded_weights = w

    def extra_repr(self) -> str:
        g = self.geometry
        groups = f"{g.groups}x" if g.groups > 1 else ""
        return (f"tiles={groups}{g.n_out}x{g.n_in} of <= {max(g.out_sizes)}x{g.p_in}, "
                + ("analog_bias=True, " if self.analog_bias else "")
                + f"rpu_config={type(self.rpu_config).__name__}")


# The layer's weight view and bias behind each writable ``with_bias_column``
# matrix (weakly, by identity: the entry goes with the matrix).
_BIAS_COLUMN_SOURCES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def with_bias_column(w: Tensor, bias: Tensor, writable: bool = False) -> Tensor:
    """The matrix a tile holding the bias column computes with: ``w`` (G, N,
    K) and the bias (G*N,) as its last column, (G, N, K + 1); differentiable
    in both. ``writable=True``: the tile's in-place writes (``write_weights``:
    clipping, closed-loop writing) reach ``w`` and ``bias`` (a concatenation
    is a new tensor, not a view of them); not inside a compiled forward."""
    G, N, _ = w.shape
    m = torch.cat([w, bias.to(w.dtype).reshape(G, N, 1)], dim=2)
    if writable:
        _BIAS_COLUMN_SOURCES[m] = (w, bias)
    return m


def write_weights(w: Tensor, value: Tensor) -> None:
    """Write ``value`` into the layer's weights ``w`` (G, N, K): a view of
    the layer's weight, or a ``with_bias_column(..., writable=True)`` matrix,
    whose weight and bias columns are written back to the layer's tensors."""
    w.copy_(value)
    parts = _BIAS_COLUMN_SOURCES.get(w)
    if parts is not None:
        weight, bias = parts
        weight.copy_(value[..., :-1])
        bias.copy_(value[..., -1].reshape(bias.shape))


def _repeat_groups(v: Optional[Tensor], samples: int) -> Optional[Tensor]:
    """A per-(group, output) vector (G*N) for ``samples`` copies of the groups."""
    if v is None or samples == 1 or v.numel() == 1:
        return v
    return v.reshape(-1).repeat(samples)



def _differences(saved, mine, path: str = "") -> list[str]:
    """``field: checkpoint X, this model Y`` for every field where two
    ``config_to_dict`` dicts differ (dotted paths)."""
    if isinstance(saved, dict) and isinstance(mine, dict) and saved.get("class") == mine.get("class"):
        out = []
        for key in list(saved) + [k for k in mine if k not in saved]:
            out += _differences(saved.get(key), mine.get(key), f"{path}.{key}" if path else key)
        return out
    if saved == mine:
        return []
    show = (lambda d: d.get("class")) if isinstance(saved, dict) and isinstance(mine, dict) else repr
    return [f"{path or 'rpu_config'}: checkpoint {show(saved)}, this model {show(mine)}"]
