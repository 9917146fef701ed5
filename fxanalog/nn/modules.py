"""Analog layers: the modules that put a weight matmul on analog tiles.

Every converted matmul is one ``AnalogLayerBase``. It owns (or, with
``inplace=True``, shares) the digital ``weight`` and ``bias`` parameters, so
``state_dict`` keys stay those of the digital layer, and knows its kind's
shapes (im2col for convolutions); everything analog (the config, the tile
geometry, the periphery, the programmed state) is its ``tile``, an
``fxanalog.tile.AnalogTile``, which the layer calls with its weights as a
``(G, N, K)`` view (``weight_matrix()``).

``AnalogLinear`` and ``AnalogConv1d/2d/3d`` are constructible as in aihwkit
and have ``from_digital`` / ``to_digital``; the compiler also builds
``AnalogLinear`` modules for functional matmuls (``F.linear``, ``x @ W``,
HuggingFace's ``Conv1D`` with ``transposed=True``).
"""

from __future__ import annotations

import math
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from fxanalog.config import InferenceRPUConfig, check_rpu_config
from fxanalog.geometry import TileGeometry
from fxanalog.tile import AnalogTile

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d", "named_analog_layers",
           "analog_layers_of", "conv_class_for"]

# The analog layers built around each weight Parameter (weakly), so that an
# optimizer given ``model.parameters()`` finds the tiles to update.
_LAYERS_OF_WEIGHT: WeakIdKeyDictionary = WeakIdKeyDictionary()


def analog_layers_of(param: Tensor) -> list["AnalogLayerBase"]:
    """The live analog layers whose weight is ``param``."""
    refs = _LAYERS_OF_WEIGHT.get(param, ())
    return [layer for layer in (r() for r in refs) if layer is not None and layer.weight is param]


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class AnalogLayerBase(nn.Module):
    """One weight matmul on a tile array: G groups of N x K weights.

    Attributes:
        weight, bias: the digital parameters (shared with the source model
            when converted in place).
        tile: the ``AnalogTile`` (config, periphery, analog state).
        analog_name: the layer's name in the model, used in messages.

    Subclasses define ``_digital`` (the digital class), ``tile_shape``,
    ``weight_matrix``/``matrix_to_weight`` when the weight is not stored as
    ``(G*N, K...)``, ``_digital_args`` and ``_from_digital_args`` (the
    constructor arguments of the digital class and of this one).
    """

    _digital: type = nn.Module

    def _init_analog(self, rpu_config, groups: int, mapped: bool) -> None:
        rpu_config = InferenceRPUConfig() if rpu_config is None else rpu_config
        check_rpu_config(rpu_config, f"{type(self).__name__}.rpu_config")
        N, K = self._matrix_dims(groups)
        m = rpu_config.mapping
        geometry = TileGeometry.split(groups, N, K, m.max_output_size if mapped else 0,
                                      m.max_input_size if mapped else 0)
        self.tile = AnalogTile(rpu_config, geometry, mapped, device=self.weight.device, name=type(self).__name__)
        self.tile.reset(self.weight_matrix())
        refs = _LAYERS_OF_WEIGHT.setdefault(self.weight, [])
        refs[:] = [r for r in refs if r() is not None] + [weakref.ref(self)]

    def _matrix_dims(self, groups: int) -> tuple[int, int]:
        """(N, K) of one group's weight matrix."""
        return self.weight.shape[0] // groups, math.prod(self.weight.shape[1:])

    # -- what the tile holds ---------------------------------------------------

    @property
    def rpu_config(self):
        """The config of the layer's tiles (``tile.rpu_config``)."""
        return self.tile.rpu_config

    @property
    def analog_name(self) -> str:
        return self.tile.name

    @analog_name.setter
    def analog_name(self, name: str) -> None:
        self.tile.name = name

    @property
    def mapped(self) -> bool:
        return self.tile.mapped

    @property
    def groups(self) -> int:
        return self.tile.geometry.groups

    @property
    def in_sizes(self) -> list[int]:
        """The tile split of one group's K inputs (``[K]`` for one tile)."""
        return list(self.tile.geometry.in_sizes)

    @property
    def out_sizes(self) -> list[int]:
        return list(self.tile.geometry.out_sizes)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(N, K): outputs and inputs of one group's weight matrix."""
        _, N, K = self.tile.geometry.shape
        return N, K

    @property
    def num_tiles(self) -> int:
        return self.tile.geometry.num_tiles

    def weight_matrix(self) -> Tensor:
        """The weights as (G, N, K) matrices (a view of ``weight``)."""
        N, K = self.tile_shape
        return self.weight.reshape(self.groups, N, K)

    def matrix_to_weight(self, w: Tensor) -> Tensor:
        """(G, N, K) matrices to the shape of ``weight``."""
        return w.reshape(self.weight.shape)

    def analog_matmul(self, x: Tensor, samples: int = 1) -> Tensor:
        """(G, B, K) inputs -> (G, B, N) outputs of the tile array (see
        ``AnalogTile.forward``)."""
        return self.tile(x, self.weight_matrix(), self.bias, samples)

    # -- weights (aihwkit's API) -------------------------------------------------

    @torch.no_grad()
    def get_weights(self, realistic: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        """The effective digital weights (tile weights times the digital
        scales) in the shape of ``weight``, and a copy of the bias.
        ``realistic=True`` estimates them from noisy forward passes instead,
        as a chip is read out (``AnalogTile.read_weights``)."""
        w = self.weight_matrix()
        est = self.tile.read_weights(w) if realistic else self.tile.effective_weight(w)
        b = None if self.bias is None else self.bias.detach().clone()
        return self.matrix_to_weight(est).to(self.weight.dtype).clone(), b

    @torch.no_grad()
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None) -> None:
        """Set the digital weights (and bias); the programmed state goes and
        the mapping scales are computed anew."""
        if tuple(weight.shape) != tuple(self.weight.shape):
            raise ValueError(
                f"{self.analog_name}.set_weights: weight of shape {tuple(weight.shape)}: "
                f"expected {tuple(self.weight.shape)}"
            )
        if bias is not None and self.bias is None:
            raise ValueError(f"{self.analog_name}.set_weights: the layer has no bias")
        self.weight.copy_(weight)
        if bias is not None:
            self.bias.copy_(bias)
        self.tile.reset(self.weight_matrix())

    # -- deployment (aihwkit's layer methods) --------------------------------------

    def program_analog_weights(self) -> None:
        """Program the weights onto the tiles (eval mode): programming noise
        and drift exponents drawn once (``AnalogTile.program``)."""
        self.tile.program(self.weight_matrix())

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """The tiles ``t_inference`` seconds after programming (eval mode),
        with read noise and drift compensation (``AnalogTile.drift``)."""
        self.tile.drift(self.weight_matrix(), t_inference)

    # -- digital <-> analog ------------------------------------------------------

    def _digital_args(self) -> dict:
        """The keyword arguments of ``_digital`` for this layer (without bias)."""
        raise NotImplementedError

    @classmethod
    def _from_digital_args(cls, module: nn.Module) -> dict:
        """The keyword arguments of this class for a digital ``module``
        (without rpu_config, weights and bias)."""
        raise NotImplementedError

    @classmethod
    def from_digital(cls, module: nn.Module, rpu_config=None, *, mapped: bool = True, share: bool = False):
        """An analog copy of a digital layer (``_digital`` or a subclass);
        ``share=True`` uses the module's own parameter tensors."""
        if not isinstance(module, cls._digital):
            raise TypeError(f"{cls.__name__}.from_digital: expected an {cls._digital.__name__}, "
                            f"got {type(module).__name__}")
        w = module.weight if share else nn.Parameter(module.weight.detach().clone())
        b = None
        if module.bias is not None:
            b = module.bias if share else nn.Parameter(module.bias.detach().clone())
        return cls(**cls._from_digital_args(module), bias=module.bias is not None, rpu_config=rpu_config,
                   mapped=mapped, weight=w, bias_param=b)

    def to_digital(self, realistic: bool = False) -> nn.Module:
        """A plain digital layer (``_digital``) with the current effective
        weights (read from noisy forward passes with ``realistic=True``, see
        ``get_weights``)."""
        w, b = self.get_weights(realistic=realistic)
        w = self._digital_weight(w)
        layer = self._digital(**self._digital_args(), bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
        return layer

    def _digital_weight(self, w: Tensor) -> Tensor:
        """``get_weights``'s weight in the digital class's layout."""
        return w

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The tile's optional state is replaced when this layer's weights load.
        self.tile.prepare_load(state_dict, prefix + "tile.", (prefix + "weight") in state_dict, self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)



def named_analog_layers(model: nn.Module) -> list[tuple[str, "AnalogLayerBase"]]:
    """``(name, layer)`` of every analog layer of ``model`` (``model`` itself
    included), in module order; a layer with no name in the model (the
    model itself) is named by its ``analog_name``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return [(name or m.analog_name, m) for name, m in model.named_modules() if isinstance(m, AnalogLayerBase)]


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

    _digital = nn.Linear

    def _matrix_dims(self, groups: int) -> tuple[int, int]:
        return self.out_features, self.in_features

    def weight_matrix(self) -> Tensor:
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

    def _digital_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features}

    @classmethod
    def _from_digital_args(cls, module: nn.Linear) -> dict:
        return {"in_features": module.in_features, "out_features": module.out_features}

    def _digital_weight(self, w: Tensor) -> Tensor:
        return w.t() if self.transposed else w

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}" + (", transposed=True" if self.transposed else ""))


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
            if k == 1:
                # A window of one: a strided slice, not Tensor.unfold. Inductor's CPU code for the
                # backward of unfold with windows of one, summed with another unfold's backward
                # into one gradient (a squeezenet Fire block), corrupts the heap (torch 2.13;
                # docs/compiler.md, "torch.compile with inductor").
                index = [slice(None)] * cols.dim()
                index[2 + d] = slice(None, None, s)
                cols = cols[tuple(index)].unsqueeze(-1)
                continue
            span = dil * (k - 1) + 1
            cols = cols.unfold(2 + d, span, s)
            if dil > 1:
                cols = cols[..., ::dil]
        L = cols.shape[2 : 2 + nd]
        G = self.groups
        # -> (G, B*L, C/G * k): channel-major, then kernel positions, like the weight.
        perm = [0] + list(range(2, 2 + nd)) + [1] + list(range(2 + nd, 2 + 2 * nd))
        K = (C // G) * math.prod(self.kernel_size)  # explicit: an empty batch has no size to infer
        cols = cols.permute(*perm).reshape(B * math.prod(L), G, K).transpose(0, 1)
        y = self.analog_matmul(cols, samples=B)  # (G, B*L, N)
        N = self.out_channels // G
        y = y.reshape(G, B, *L, N).permute(1, 0, 1 + nd + 1, *range(2, 2 + nd))
        y = y.reshape(B, self.out_channels, *L)
        return y.squeeze(0) if unbatched else y

    def _digital_args(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups, "padding_mode": self.padding_mode}

    @classmethod
    def _from_digital_args(cls, module: nn.Module) -> dict:
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel_size": module.kernel_size, "stride": module.stride, "padding": module.padding,
                "dilation": module.dilation, "groups": module.groups, "padding_mode": module.padding_mode}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


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
