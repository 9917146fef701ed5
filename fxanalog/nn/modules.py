"""Analog layers: the modules that hold a converted weight matmul's analog state.

Every converted matmul is one ``AnalogLayerBase``: it owns (or, with
``inplace=True``, shares) the digital weight and bias parameters, the tile
map of its config's mapping, the digital mapping scales, and computes its
output with one call of ``fxanalog::tile_mvm`` on all of its tiles.

``AnalogLinear`` and ``AnalogConv1d/2d/3d`` are constructible as in aihwkit
and have ``from_digital`` / ``to_digital``; the compiler also builds
``AnalogLinear`` modules for functional matmuls (``F.linear``, ``x @ W``,
HuggingFace's ``Conv1D`` with ``transposed=True``).
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxanalog.config import InferenceRPUConfig, check_rpu_config
from fxanalog.nn.input_range import input_range_config, input_range_matmul
from fxanalog.tile import (
    _finish_digital,
    compute_dtype,
    fold_samples,
    layout_tiles,
    pack_io,
    split_sizes,
    unfold_samples,
)

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d", "named_analog_layers"]

# Buffers of the programmed state (see AnalogLayerBase and fxanalog.inference).
ANALOG_STATE = (
    "programmed_conductances",
    "drift_exponents",
    "conductance_scales",
    "drift_reference",
    "analog_weight",
    "drift_scales",
)


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class AnalogLayerBase(nn.Module):
    """One weight matmul on a tile array: G groups of N x K weights.

    Attributes:
        weight, bias: the digital parameters (shared with the source model
            when converted in place).
        rpu_config: the layer's config (validated at every use).
        in_sizes, out_sizes: the tile split of one group's K inputs and N
            outputs (``[K]``, ``[N]`` for one tile).
        mapping_scales: digital factor per output (weight scaling omega),
            or None.
        out_scaling_alpha: learnable output scales (``learn_out_scaling``).
        analog_name: the layer's name in the model, used in messages.

    Analog state (buffers, in ``state_dict()`` once set; see
    ``fxanalog.inference``): ``programmed_conductances`` and
    ``drift_exponents`` ``(2, G, N, K)`` for g+ and g-,
    ``conductance_scales`` ``(G, n_out, n_in)`` (uS per tile unit of each
    tile), ``drift_reference`` ``(G, N)``, ``analog_weight`` ``(G, N, K)``
    (the tile weights now, used in eval) and ``drift_scales`` ``(G*N,)``
    (the drift compensation, folded into the digital column scales in eval).
    ``programming_report`` holds the closed-loop write's result.
    """

    groups: int

    def _init_analog(self, rpu_config, groups: int, mapped: bool) -> None:
        rpu_config = InferenceRPUConfig() if rpu_config is None else rpu_config
        check_rpu_config(rpu_config, f"{type(self).__name__}.rpu_config")
        self.rpu_config = copy.deepcopy(rpu_config)
        self.groups = groups
        self.mapped = mapped
        self.analog_name = type(self).__name__
        self._tiles_cache: Optional[tuple] = None
        self._io_cache: Optional[tuple] = None
        N, K = self.tile_shape
        m = self.rpu_config.mapping
        self.in_sizes = split_sizes(K, m.max_input_size if mapped else 0)
        self.out_sizes = split_sizes(N, m.max_output_size if mapped else 0)
        self.register_buffer("mapping_scales", None)
        self.out_scaling_alpha = None
        for name in ANALOG_STATE:
            self.register_buffer(name, None)
        self.programming_report: Optional[dict] = None
        self.reset_mapping_scales()
        self.reset_input_range()

    # -- shapes ------------------------------------------------------------

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(N, K): outputs and inputs of one group's weight matrix."""
        w = self.weight
        return w.shape[0] // self.groups, math.prod(w.shape[1:])

    @property
    def num_tiles(self) -> int:
        return self.groups * len(self.in_sizes) * len(self.out_sizes)

    def digital_weight_matrix(self) -> Tensor:
        """The weights as (G, N, K) matrices (a view of ``weight``)."""
        N, K = self.tile_shape
        return self.weight.reshape(self.groups, N, K)

    # -- mapping scales ----------------------------------------------------

    @torch.no_grad()
    def reset_mapping_scales(self) -> None:
        """Weight scaling (``mapping.weight_scaling_omega``): the tile holds
        W/alpha with alpha = max|W|/omega (per output when columnwise), and
        alpha goes to the digital output scales."""
        m = self.rpu_config.mapping
        G = self.groups
        N, _ = self.tile_shape
        if m.weight_scaling_omega > 0:
            w = self.digital_weight_matrix().detach().float()
            if m.weight_scaling_columnwise:
                amax = w.abs().amax(dim=-1).reshape(-1)
            else:
                amax = w.abs().amax().reshape(1)
            alpha = amax / m.weight_scaling_omega
            alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
            self.mapping_scales = alpha
        else:
            self.mapping_scales = None
        if m.learn_out_scaling:
            size = G * N if m.out_scaling_columnwise else 1
            self.out_scaling_alpha = nn.Parameter(torch.ones(size, device=self.weight.device))
        self._tiles_cache = None

    # -- input range -------------------------------------------------------

    @torch.no_grad()
    def reset_input_range(self) -> None:
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
        shape = (self.groups, len(self.in_sizes))
        device = self.weight.device
        self.input_range = nn.Parameter(
            torch.full(shape, float(cfg.init_value), device=device), requires_grad=cfg.learn_input_range
        )
        self.register_buffer("input_range_update_idx", torch.zeros(shape, dtype=torch.long, device=device))

    # -- tiles -------------------------------------------------------------

    def tile_weight(self) -> Tensor:
        """The conductance-equivalent weights on the tiles, (G, N, K), in tile
        units: in eval, once programmed, the programmed (or drifted) weights;
        else the target weights."""
        if not self.training and self.analog_weight is not None:
            return self.analog_weight
        return self.target_tile_weight()

    def target_tile_weight(self) -> Tensor:
        """The digital weights in tile units (divided by the mapping scales), (G, N, K)."""
        w = self.digital_weight_matrix()
        if self.mapping_scales is not None:
            s = self.mapping_scales.to(w.dtype)
            w = w / (s.reshape(self.groups, -1, 1) if s.numel() > 1 else s)
        return w

    def tiles(self) -> Tensor:
        """The tile array, (G, n_in, p_in, N): a view of the weights when the
        pieces are even and nothing is scaled, else a copy. In eval mode
        without autograd the copy is cached while the weight tensor and its
        version are unchanged (writes through ``weight.data`` bypass version
        tracking: use ``set_weights`` or call ``invalidate_tiles()``)."""
        cacheable = not self.training and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        if cacheable:
            key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype, self.weight.device,
                   self.training, _tensor_key(self.mapping_scales), _tensor_key(self.analog_weight))
            if self._tiles_cache is not None and self._tiles_cache[0] == key:
                return self._tiles_cache[1]
        w = self.tile_weight()
        t = layout_tiles(w.to(compute_dtype(w.dtype)), self.in_sizes)
        self._tiles_cache = (key, t) if cacheable else None
        return t

    def invalidate_tiles(self) -> None:
        """Forget the cached tile array (after writing the weights behind autograd's back)."""
        self._tiles_cache = None

    # -- compute -----------------------------------------------------------

    def packed_io(self) -> tuple[list[float], list[float]]:
        """The forward and backward IOParameters, validated and packed for the
        op. Re-validated whenever a field changed since the last call, so a
        config mutated after conversion is checked at its next use."""
        cfg = self.rpu_config
        fwd, bwd = cfg.forward, cfg.backward
        snapshot = (type(cfg), tuple(fwd.__dict__.values()), tuple(bwd.__dict__.values()))
        if self._io_cache is None or self._io_cache[0] != snapshot:
            cfg.check_tile_config(f"{self.analog_name}.rpu_config")
            self._io_cache = (snapshot, pack_io(fwd), pack_io(bwd))
        return self._io_cache[1], self._io_cache[2]

    def analog_matmul(self, x: Tensor, samples: int = 1) -> Tensor:
        """(G, B, K) inputs -> (G, B, N) outputs of the tile array, with the
        digital output scales and bias. The B rows are ``samples`` samples of
        ``B / samples`` consecutive rows each; with the modifier's
        ``per_batch_sample`` every sample gets its own perturbed weights."""
        forward_io, backward_io = self.packed_io()
        G = self.groups
        N, K = self.tile_shape
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.analog_name}: input dtype {x.dtype}: expected a floating-point tensor")
        if x.shape[-1] != K or x.shape[0] != G:
            raise ValueError(
                f"{self.analog_name}: input of shape {tuple(x.shape)}: expected (groups={G}, batch, {K}) "
                f"for a tile array of {K} inputs"
            )
        S = self._weight_draws(samples, x.shape[1])
        tiles = self.forward_tiles(S)
        learn = self.out_scaling_alpha is not None
        col = self.digital_col_scale()
        bias = None if (self.bias is None or learn) else self.bias
        if input_range_config(self.rpu_config) is not None:
            y = input_range_matmul(self, x, tiles, forward_io, backward_io, samples=S)
            y = _finish_digital(y, col, bias).to(x.dtype)
        else:
            y = torch.ops.fxanalog.tile_mvm(
                fold_samples(x, S),
                tiles,
                self.in_sizes,
                self.out_sizes,
                _repeat_groups(col, S),
                _repeat_groups(bias, S),
                forward_io,
                backward_io,
            )
            y = unfold_samples(y, S)
        if learn:
            a = self.out_scaling_alpha.to(y.dtype)
            y = y * (a.reshape(G, 1, N) if a.numel() > 1 else a)
            if self.bias is not None:
                y = y + self.bias.to(y.dtype).reshape(G, 1, N)
        return y

    def _weight_draws(self, samples: int, rows: int) -> int:
        """How many perturbed weight sets this forward pass draws: ``samples``
        with the modifier's ``per_batch_sample`` (when the modifier acts),
        else 1."""
        modifier = getattr(self.rpu_config, "modifier", None)
        if (
            samples <= 1
            or modifier is None
            or not modifier.per_batch_sample
            or not (self.training or modifier.enable_during_test)
        ):
            return 1
        from fxanalog.inference import modifier_active

        if not modifier_active(modifier):
            return 1
        if rows % samples:
            raise ValueError(f"{self.analog_name}: {rows} input rows are not {samples} samples of equal size")
        return samples

    def forward_tiles(self, draws: int = 1) -> Tensor:
        """The tiles of this forward pass: ``tiles()``, with the weight
        modifier (``rpu_config.modifier``) applied in training (and in eval
        with ``enable_during_test``); the stored weights are not changed.
        ``draws > 1`` (``per_batch_sample``): that many independently perturbed
        copies, as ``draws * G`` groups (copy-major)."""
        modifier = getattr(self.rpu_config, "modifier", None)
        if modifier is not None and (self.training or modifier.enable_during_test):
            from fxanalog.inference import modified_tile_weight, modifier_active

            if modifier_active(modifier):
                return layout_tiles(modified_tile_weight(self, draws).float(), self.in_sizes)
        return self.tiles()

    def digital_col_scale(self) -> Optional[Tensor]:
        """The digital factor per output passed to the op: the mapping scales,
        times the drift compensation in eval once drifted."""
        s = self.mapping_scales
        d = None if self.training else self.drift_scales
        if d is None:
            return s
        return d if s is None else s * d

    # -- analog state --------------------------------------------------------

    def clear_analog_state(self) -> None:
        """Forget the programmed state (back to the digital weights in eval)."""
        for name in ANALOG_STATE:
            setattr(self, name, None)
        self._tiles_cache = None

    @torch.no_grad()
    def set_tile_weight(self, w: Tensor) -> None:
        """Set the digital weights from (G, N, K) tile-unit weights (times the
        mapping scales); the mapping scales stay."""
        if self.mapping_scales is not None:
            s = self.mapping_scales.to(w.dtype)
            w = w * (s.reshape(self.groups, -1, 1) if s.numel() > 1 else s)
        self.weight.copy_(self.matrix_to_weight(w).to(self.weight.dtype))
        self._tiles_cache = None

    def matrix_to_weight(self, w: Tensor) -> Tensor:
        """(G, N, K) matrices to the shape of ``weight``."""
        return w.reshape(self.weight.shape)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The analog state exists only once programmed (and the mapping scales
        # only with weight scaling or remapping): take them from the state
        # dict when there, drop them when a full state of this layer lacks them.
        full = (prefix + "weight") in state_dict
        self._input_range_init_done = False  # the loaded counts decide anew
        for name in ("mapping_scales",) + ANALOG_STATE:
            key = prefix + name
            if key in state_dict:
                v = state_dict[key]
                setattr(self, name, torch.empty_like(v, device=self.weight.device))
            elif full:
                setattr(self, name, None)
        self._tiles_cache = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # -- weights -----------------------------------------------------------

    @torch.no_grad()
    def get_weights(self, realistic: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        """The effective digital weights (tile weights times the digital
        scales) in the digital layer's shape, and the bias. ``realistic=True``
        estimates them from noisy forward passes instead
        (``fxanalog.inference.read_weights``)."""
        if realistic:
            from fxanalog.inference import read_weights

            return read_weights(self)
        w = self.tile_weight().float()
        s = self.digital_col_scale()
        if s is not None:
            w = w * (s.reshape(self.groups, -1, 1) if s.numel() > 1 else s)
        if self.out_scaling_alpha is not None:
            a = self.out_scaling_alpha.detach()
            w = w * (a.reshape(self.groups, -1, 1) if a.numel() > 1 else a)
        w = self.matrix_to_weight(w).to(self.weight.dtype)
        b = None if self.bias is None else self.bias.detach().clone()
        return w.clone(), b

    @torch.no_grad()
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None) -> None:
        """Set the digital weights (and bias), then the mapping scales anew."""
        if tuple(weight.shape) != tuple(self.weight.shape):
            raise ValueError(
                f"{self.analog_name}.set_weights: weight of shape {tuple(weight.shape)}: "
                f"expected {tuple(self.weight.shape)}"
            )
        self.weight.copy_(weight)
        if bias is not None:
            if self.bias is None:
                raise ValueError(f"{self.analog_name}.set_weights: the layer has no bias")
            self.bias.copy_(bias)
        self.clear_analog_state()
        self.reset_mapping_scales()

    def extra_repr(self) -> str:
        N, K = self.tile_shape
        tiles = f"{self.groups}x" if self.groups > 1 else ""
        return (
            f"{super().extra_repr()}, tiles={tiles}{len(self.out_sizes)}x{len(self.in_sizes)} "
            f"of <= {max(self.out_sizes)}x{max(self.in_sizes)}, rpu_config={type(self.rpu_config).__name__}"
        ).lstrip(", ")


def named_analog_layers(model: nn.Module) -> list[tuple[str, "AnalogLayerBase"]]:
    """``(name, layer)`` of every analog layer of ``model`` (``model`` itself
    included), in module order; a layer with no name in the model (the
    model itself) is named by its ``analog_name``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return [(name or m.analog_name, m) for name, m in model.named_modules() if isinstance(m, AnalogLayerBase)]


def _repeat_groups(v: Optional[Tensor], samples: int) -> Optional[Tensor]:
    """A per-(group, output) vector (G*N) for ``samples`` copies of the groups."""
    if v is None or samples == 1 or v.numel() == 1:
        return v
    return v.reshape(-1).repeat(samples)


def _tensor_key(t: Optional[Tensor]):
    return None if t is None else (t._version, t.data_ptr())




# --------------------------------------------------------------------------
# Linear


class AnalogLinear(AnalogLayerBase):
    """``nn.Linear`` on analog tiles. ``transposed=True`` stores the weight as
    (in, out), as HuggingFace's ``Conv1D`` and ``x @ W`` do."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rpu_config=None,
        *,
        mapped: bool = True,
        transposed: bool = False,
        weight: Optional[nn.Parameter] = None,
        bias_param: Optional[nn.Parameter] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.transposed = transposed
        if weight is None:
            ref = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
            weight = nn.Parameter(ref.weight.detach().t().contiguous() if transposed else ref.weight.detach())
            bias_param = ref.bias if bias else None
        self.weight = weight
        self.bias = bias_param
        self._init_analog(rpu_config, groups=1, mapped=mapped)

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    def digital_weight_matrix(self) -> Tensor:
        w = self.weight.t() if self.transposed else self.weight
        return w.unsqueeze(0)

    def matrix_to_weight(self, w: Tensor) -> Tensor:
        return w[0].t() if self.transposed else w[0]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self.analog_name}: input of shape {tuple(x.shape)}: expected the last dimension "
                f"to be in_features = {self.in_features}"
            )
        lead = x.shape[:-1]
        samples = x.shape[0] if x.dim() > 1 else 1  # per_batch_sample: per leading index
        y = self.analog_matmul(x.reshape(1, -1, self.in_features), samples)
        return y.reshape(*lead, self.out_features)

    @classmethod
    def from_digital(cls, module: nn.Module, rpu_config=None, *, mapped: bool = True, share: bool = False):
        """An analog copy of ``nn.Linear`` (or a subclass); ``share=True``
        uses the module's own parameter tensors."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"AnalogLinear.from_digital: expected an nn.Linear, got {type(module).__name__}")
        w = module.weight if share else nn.Parameter(module.weight.detach().clone())
        b = None
        if module.bias is not None:
            b = module.bias if share else nn.Parameter(module.bias.detach().clone())
        return cls(module.in_features, module.out_features, module.bias is not None, rpu_config,
                   mapped=mapped, weight=w, bias_param=b)

    def to_digital(self, realistic: bool = False) -> nn.Linear:
        """A plain ``nn.Linear`` with the current effective weights (read from
        noisy forward passes with ``realistic=True``, see ``get_weights``)."""
        w, b = self.get_weights(realistic=realistic)
        if self.transposed:
            w = w.t()
        lin = nn.Linear(self.in_features, self.out_features, bias=b is not None,
                        device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b)
        return lin

    def get_weights_matrix(self) -> Tensor:
        """(out, in) effective weights, whatever the storage orientation."""
        w, _ = self.get_weights()
        return w.t() if self.transposed else w


# --------------------------------------------------------------------------
# Convolutions


class _AnalogConvNd(AnalogLayerBase):
    _nd: int = 2
    _digital: type = nn.Conv2d

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        rpu_config=None,
        *,
        mapped: bool = True,
        weight: Optional[nn.Parameter] = None,
        bias_param: Optional[nn.Parameter] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        nd = self._nd
        if weight is None:
            ref = self._digital(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                bias, padding_mode, device=device, dtype=dtype)
            weight, bias_param = ref.weight, (ref.bias if bias else None)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _tuple(kernel_size, nd)
        self.stride = _tuple(stride, nd)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, nd)
        self.dilation = _tuple(dilation, nd)
        self.padding_mode = padding_mode
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: channels ({in_channels}, {out_channels}) "
                             f"are not divisible by groups = {groups}")
        self.weight = weight
        self.bias = bias_param
        self._init_analog(rpu_config, groups=groups, mapped=mapped)

    def _pad(self, x: Tensor) -> Tensor:
        """Pad the input as the digital convolution would (every padding mode,
        zeros included, is applied here; the unfold then pads nothing)."""
        nd = self._nd
        if isinstance(self.padding, str):
            if self.padding == "valid":
                pads = [(0, 0)] * nd
            elif self.padding == "same":
                pads = []
                for k, d in zip(self.kernel_size, self.dilation):
                    total = d * (k - 1)
                    pads.append((total // 2, total - total // 2))
            else:
                raise ValueError(f"{self.analog_name}: padding = {self.padding!r}: expected 'same', 'valid' or numbers")
        else:
            pads = [(p, p) for p in self.padding]
        flat = []
        for left, right in reversed(pads):  # F.pad wants the last dim first
            flat += [left, right]
        if not any(flat):
            return x
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, flat, mode=mode)

    def forward(self, x: Tensor) -> Tensor:
        nd = self._nd
        if x.dim() not in (nd + 1, nd + 2) or x.shape[-nd - 1] != self.in_channels:
            raise ValueError(
                f"{self.analog_name}: input of shape {tuple(x.shape)}: expected (batch, {self.in_channels}, "
                f"{nd} spatial dims)"
            )
        unbatched = x.dim() == nd + 1
        if unbatched:
            x = x.unsqueeze(0)
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.analog_name}: input dtype {x.dtype}: expected a floating-point tensor")
        x = self._pad(x)
        B, C = x.shape[:2]
        # im2col for any number of spatial dims: (B, C, L1..Ln, k1..kn).
        cols = x
        for d, (k, s, dil) in enumerate(zip(self.kernel_size, self.stride, self.dilation)):
            span = dil * (k - 1) + 1
            cols = cols.unfold(2 + d, span, s)
            if dil > 1:
                cols = cols[..., ::dil]
        L = cols.shape[2 : 2 + nd]
        G = self.groups
        # -> (G, B*L, C/G * k): channel-major, then kernel positions, like the weight.
        perm = [0] + list(range(2, 2 + nd)) + [1] + list(range(2 + nd, 2 + 2 * nd))
        cols = cols.permute(*perm).reshape(B * math.prod(L), G, -1).transpose(0, 1)
        y = self.analog_matmul(cols, samples=B)  # (G, B*L, N)
        N = self.out_channels // G
        y = y.reshape(G, B, *L, N).permute(1, 0, 1 + nd + 1, *range(2, 2 + nd))
        y = y.reshape(B, self.out_channels, *L)
        return y.squeeze(0) if unbatched else y

    @classmethod
    def from_digital(cls, module: nn.Module, rpu_config=None, *, mapped: bool = True, share: bool = False):
        if not isinstance(module, cls._digital):
            raise TypeError(f"{cls.__name__}.from_digital: expected an {cls._digital.__name__}, "
                            f"got {type(module).__name__}")
        w = module.weight if share else nn.Parameter(module.weight.detach().clone())
        b = None
        if module.bias is not None:
            b = module.bias if share else nn.Parameter(module.bias.detach().clone())
        return cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                   module.dilation, module.groups, module.bias is not None, module.padding_mode, rpu_config,
                   mapped=mapped, weight=w, bias_param=b)

    def to_digital(self, realistic: bool = False) -> nn.Module:
        """A plain ``nn.ConvNd`` with the current effective weights (read from
        noisy forward passes with ``realistic=True``, see ``get_weights``)."""
        w, b = self.get_weights(realistic=realistic)
        conv = self._digital(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                             self.dilation, self.groups, b is not None, self.padding_mode,
                             device=w.device, dtype=w.dtype)
        with torch.no_grad():
            conv.weight.copy_(w)
            if b is not None:
                conv.bias.copy_(b)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, " + super().extra_repr())


class AnalogConv1d(_AnalogConvNd):
    """``nn.Conv1d`` on analog tiles (unfold, then the tile MVM)."""

    _nd, _digital = 1, nn.Conv1d


class AnalogConv2d(_AnalogConvNd):
    """``nn.Conv2d`` on analog tiles (unfold, then the tile MVM)."""

    _nd, _digital = 2, nn.Conv2d


class AnalogConv3d(_AnalogConvNd):
    """``nn.Conv3d`` on analog tiles (unfold, then the tile MVM)."""

    _nd, _digital = 3, nn.Conv3d


def conv_class_for(module: nn.Module) -> Optional[type]:
    """The analog class of a digital convolution (subclasses included)."""
    for cls in (AnalogConv1d, AnalogConv2d, AnalogConv3d):
        if isinstance(module, cls._digital):
            return cls
    return None
