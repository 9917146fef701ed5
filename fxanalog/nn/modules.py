"""Analog layers: the modules that put a weight matmul on analog tiles.

Every converted matmul is one ``AnalogLayerBase``. It owns (or, with
``inplace=True``, shares) the digital ``weight`` and ``bias`` parameters, so
``state_dict`` keys stay those of the digital layer, and knows its kind's
shapes (im2col for convolutions); everything analog (the config, the tile
geometry, the periphery, the programmed state) is its ``tile``, an
``fxanalog.tile.AnalogTile``, which the layer calls with its weights as a
``(G, N, K)`` view (``weight_matrix()``; with an analog bias,
``mapping.digital_bias = False``, the bias is their last column and the
inputs get a constant 1 column: docs/tile.md, "Analog bias").

``AnalogLinear`` and ``AnalogConv1d/2d/3d`` are constructible as in aihwkit
and have ``from_digital`` / ``to_digital``; the compiler also builds
``AnalogLinear`` modules for functional matmuls (``F.linear``, ``x @ W``,
HuggingFace's ``Conv1D`` with ``transposed=True``).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import math
import weakref
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxanalog.config import InferenceRPUConfig, check_rpu_config
from fxanalog.geometry import TileGeometry
from fxanalog.tile import AnalogTile, with_bias_column

__all__ = ["AnalogLayerBase", "AnalogSequential", "load_state_dict", "rpu_config_loading", "program_layers", "drift_layers", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d", "named_analog_layers",
           "analog_layers_of", "conv_class_for"]

# The analog layers built around each weight Parameter, so that an optimizer
# given ``model.parameters()`` finds the tiles to update: id(weight) -> (a
# weak reference to the weight, weak references to its layers). The entry
# goes with its weight. (Keyed by id: a WeakIdKeyDictionary lookup costs
# microseconds, and every optimizer step looks up every parameter.)
_LAYERS_OF_WEIGHT: dict[int, tuple[weakref.ref, list]] = {}


def analog_layers_of(param: Tensor) -> list["AnalogLayerBase"]:
    """The live analog layers whose weight is ``param``."""
    entry = _LAYERS_OF_WEIGHT.get(id(param))
    if entry is None or entry[0]() is not param:
        return []
    return [layer for layer in (r() for r in entry[1]) if layer is not None and layer.weight is param]


def _note_layer_of(param: Tensor, layer: "AnalogLayerBase") -> None:
    key = id(param)
    entry = _LAYERS_OF_WEIGHT.get(key)
    if entry is None or entry[0]() is not param:
        entry = _LAYERS_OF_WEIGHT[key] = (weakref.ref(param, functools.partial(_forget_weight, key)), [])
    entry[1][:] = [r for r in entry[1] if r() is not None] + [weakref.ref(layer)]


def _forget_weight(key: int, ref: weakref.ref) -> None:
    entry = _LAYERS_OF_WEIGHT.get(key)
    if entry is not None and entry[0] is ref:
        del _LAYERS_OF_WEIGHT[key]


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class AnalogLayerBase(nn.Module, abc.ABC):
    """One weight matmul on a tile array: G groups of N x K weights.

    Attributes:
        weight, bias: the digital parameters (shared with the source model
            when converted in place).
        tile: the ``AnalogTile`` (config, periphery, analog state).
        analog_name: the layer's name in the model, used in messages.

    Subclasses define ``_digital`` (the digital class), ``_matrix_dims``,
    ``_weight_view``/``matrix_to_weight`` when the weight is not stored as
    ``(G*N, K...)``, ``_digital_args`` and ``_from_digital_args`` (the
    constructor arguments of the digital class and of this one).
    """

    _digital: type = nn.Module

    def _init_analog(self, rpu_config, groups: int, mapped: bool) -> None:
        rpu_config = InferenceRPUConfig() if rpu_config is None else rpu_config
        check_rpu_config(rpu_config, f"{type(self).__name__}.rpu_config")
        N, K = self._matrix_dims(groups)
        m = rpu_config.mapping
        analog_bias = self.bias is not None and not m.digital_bias  # the bias column counts as an input
        geometry = TileGeometry.split(groups, N, K + analog_bias, m.max_output_size if mapped else 0,
                                      m.max_input_size if mapped else 0)
        self.tile = AnalogTile(rpu_config, geometry, mapped, device=self.weight.device, name=type(self).__name__,
                               analog_bias=analog_bias)
        self.tile.reset(self.weight_matrix())
        self.register_state_dict_post_hook(_save_tile_metadata)
        _note_layer_of(self.weight, self)

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
    def analog_bias(self) -> bool:
        """The bias is the tiles' last input column (``mapping.digital_bias =
        False`` and a bias), as aihwkit's ``analog_bias``."""
        return self.tile.analog_bias

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(N, K): outputs and inputs of one group's tile matrix (the bias
        column included with an analog bias)."""
        _, N, K = self.tile.geometry.shape
        return N, K

    @property
    def num_tiles(self) -> int:
        return self.tile.geometry.num_tiles

    def weight_matrix(self) -> Tensor:
        """What the tiles hold, as (G, N, K) matrices: a view of ``weight``;
        with an analog bias, the weights and the bias as the last column
        (``with_bias_column``: the tile's in-place writes reach both)."""
        w = self._weight_view()
        return with_bias_column(w, self.bias, writable=True) if self.analog_bias else w

    def _weight_view(self) -> Tensor:
        """The weights alone as (G, N, K) matrices, a view of ``weight``."""
        N, K = self._matrix_dims(self.groups)
        return self.weight.reshape(self.groups, N, K)

    def matrix_to_weight(self, w: Tensor) -> Tensor:
        """(G, N, K) matrices to the shape of ``weight``."""
        return w.reshape(self.weight.shape)

    def analog_matmul(self, x: Tensor, samples: int = 1) -> Tensor:
        """(G, B, K) inputs -> (G, B, N) outputs of the tile array (see
        ``AnalogTile.forward``). With an analog bias the rows get a last
        input of constant 1.0 (in input units, before noise management and
        the DAC) and the tiles add the bias as any other weight column."""
        if self.analog_bias:
            ones = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
            return self.tile(torch.cat([x, ones], dim=-1), with_bias_column(self._weight_view(), self.bias),
                             None, samples)
        return self.tile(x, self.weight_matrix(), self.bias, samples)

    # -- weights (aihwkit's API) -------------------------------------------------

    @torch.no_grad()
    def get_weights(self, apply_weight_scaling: bool = True, realistic: bool = False, *,
                    matrix: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        """The effective digital weights (tile weights times every digital
        output factor) and a copy of the bias, as aihwkit's
        ``get_weights(apply_weight_scaling, realistic)``.

        ``apply_weight_scaling=False``: the weights on the tiles (tile units,
        what is programmed), without the digital factors (mapping scales,
        drift compensation, learned output scales). ``realistic=True``:
        estimated from noisy forward passes, as a chip is read out
        (``AnalogTile.read_weights``). The weight comes in the shape of
        ``weight``, or with ``matrix=True`` as aihwkit's tile matrix
        ``(out, in / groups * prod(kernel_size))`` (for a linear layer,
        ``(out, in)`` also when stored transposed)."""
        w = self.weight_matrix()
        if realistic:
            est = self.tile.read_weights(w)
            if not apply_weight_scaling:
                est = self.tile.without_digital_scales(est)
        else:
            est = self.tile.effective_weight(w) if apply_weight_scaling else self.tile.tile_weight(w).float()
        est = est.to(self.weight.dtype)
        b = None if self.bias is None else self.bias.detach().clone()
        if self.analog_bias:  # the bias as the tiles hold it: their last column, read as the weights are
            b = est[..., -1].reshape(self.bias.shape).to(self.bias.dtype).clone()
            est = est[..., :-1]
        out = est.reshape(-1, est.shape[-1]).clone() if matrix else self.matrix_to_weight(est).clone()
        return out, b

    @torch.no_grad()
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None, apply_weight_scaling: bool = True,
                    realistic: bool = False, weight_scaling_omega: Optional[float] = None, *,
                    matrix: Optional[bool] = None) -> None:
        """Set the weights (and bias), as aihwkit's ``set_weights(weight,
        bias, apply_weight_scaling, realistic, weight_scaling_omega)``; the
        programmed state goes.

        ``weight`` in the shape of ``weight`` or as aihwkit's tile matrix
        ``(out, in / groups * prod(kernel_size))`` (``matrix=None``: by its
        shape, the layer's own shape first; ``True``/``False`` say which).
        ``apply_weight_scaling=True``: these are digital weights, the
        mapping scales are computed anew (with ``weight_scaling_omega`` when
        given, else the config's); ``False``: these are the tile weights,
        the mapping scales are kept (the digital weights become them times
        the scales). ``realistic=True``: then written by closed-loop
        programming (``AnalogTile.realistic_write``), the written weights
        replacing the layer's."""
        where = f"{self.analog_name}.set_weights"
        N, K = self._matrix_dims(self.groups)
        shape, own, mat = tuple(weight.shape), tuple(self.weight.shape), (self.groups * N, K)
        if matrix is None:
            matrix = shape != own and shape == mat
        if shape != (mat if matrix else own):
            raise ValueError(f"{where}: weight of shape {shape}: expected {own}"
                             + (f" or the tile matrix {mat}" if mat != own else ""))
        if bias is not None and self.bias is None:
            raise ValueError(f"{where}: the layer has no bias")
        if bias is not None and tuple(bias.shape) != tuple(self.bias.shape):
            raise ValueError(f"{where}: bias of shape {tuple(bias.shape)}: expected {tuple(self.bias.shape)}")
        m = weight.reshape(self.groups, N, K) if matrix else self.as_matrices_of(weight)
        if self.analog_bias:  # the bias is a tile column: tile units too when the weights are
            kept = (self.bias.detach() if apply_weight_scaling
                    else self.tile.to_tile_units(self.weight_matrix())[..., -1])
            m = with_bias_column(m, kept if bias is None else bias)
        if not apply_weight_scaling:
            m = self.tile.to_digital_units(m.to(self.weight.dtype))
        if self.analog_bias:
            bias, m = m[..., -1].reshape(self.bias.shape), m[..., :-1]
        self.weight.copy_(self.matrix_to_weight(m))
        if bias is not None:
            self.bias.copy_(bias)
        self.tile.reset(self.weight_matrix(), weight_scaling_omega, keep_mapping_scales=not apply_weight_scaling)
        if realistic:
            self.tile.realistic_write(self.weight_matrix())

    def as_matrices_of(self, weight: Tensor) -> Tensor:
        """A tensor in the shape of ``weight`` as (G, N, K) matrices (the
        layout of ``weight_matrix()``, without a bias column)."""
        N, K = self._matrix_dims(self.groups)
        return weight.reshape(self.groups, N, K)

    @torch.no_grad()
    def remap_analog_weights(self, weight_scaling_omega: Optional[float] = 1.0) -> None:
        """aihwkit's ``remap_analog_weights``: the mapping scales computed anew
        from the layer's digital weights, so that the largest tile weight is
        ``weight_scaling_omega`` (1.0 by default, as in aihwkit; None: the
        config's ``mapping.weight_scaling_omega``); the digital weights do
        not change. The programmed state goes (program again)."""
        self.tile.reset(self.weight_matrix(), weight_scaling_omega)

    # -- deployment (aihwkit's layer methods) --------------------------------------

    def program_analog_weights(self, noise_model=None) -> None:
        """Program the weights onto the tiles (eval mode): programming noise
        and drift exponents drawn once (``AnalogTile.program``). A
        ``noise_model`` given replaces the config's (as in aihwkit)."""
        if noise_model is not None:
            self.tile.set_noise_model(noise_model)
        self.tile.program(self.weight_matrix())

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """The tiles ``t_inference`` seconds after programming (eval mode),
        with read noise and drift compensation (``AnalogTile.drift``)."""
        self.tile.drift(self.weight_matrix(), t_inference)

    # -- checkpoints ---------------------------------------------------------------

    load_options: tuple = (None, None)  # (load_rpu_config, strict_rpu_config_check) while loading

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False, *,
                        load_rpu_config: Optional[bool] = None, strict_rpu_config_check: Optional[bool] = None):
        """torch's ``load_state_dict`` with aihwkit's ``load_rpu_config`` and
        ``strict_rpu_config_check`` (see ``fxanalog.nn.load_state_dict``)."""
        with rpu_config_loading(self, load_rpu_config, strict_rpu_config_check):
            return super().load_state_dict(state_dict, strict, assign)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The config first (it may replace the tile's), then the tile's optional
        # state, replaced when this layer's weights load (docs/tile.md, "Checkpoints").
        errors = self.tile.check_checkpoint(local_metadata.get("fxanalog"), *self.load_options, prefix[:-1] or None)
        if errors:
            error_msgs.extend(errors)
            self.tile.skip_next_load()  # this layer stays as it is
            return
        replace = (prefix + "weight") in state_dict
        if not self.tile.prepare_load(state_dict, prefix + "tile.", replace, self.weight.device, error_msgs):
            return  # the errors are reported; this layer stays as it is
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if replace:
            self.tile.weights_loaded(self.weight_matrix())

    # -- digital <-> analog ------------------------------------------------------

    @abc.abstractmethod
    def _digital_args(self) -> dict:
        """The keyword arguments of ``_digital`` for this layer (without bias);
        every layer class defines it (AnalogLinear, AnalogConvNd)."""

    @classmethod
    @abc.abstractmethod
    def _from_digital_args(cls, module: nn.Module) -> dict:
        """The keyword arguments of this class for a digital ``module``
        (without rpu_config, weights and bias); every layer class defines it."""

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


def _save_tile_metadata(layer: "AnalogLayerBase", state_dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook of every analog layer: the tile's config and split
    in the layer's metadata (``state_dict._metadata[<layer>]["fxanalog"]``;
    docs/tile.md, "Checkpoints"), not as keys."""
    data = layer.tile.checkpoint_metadata()
    if data is not None:
        local_metadata["fxanalog"] = data


@contextlib.contextmanager
def rpu_config_loading(model: nn.Module, load_rpu_config: Optional[bool] = None,
                       strict_rpu_config_check: Optional[bool] = None):
    """A context in which every analog layer of ``model`` loads checkpoints
    with these options (see ``load_state_dict``; nothing changes when both
    are None: an outer call's options stay). For a model class's own
    ``load_state_dict(..., load_rpu_config=...)``:
    ``with rpu_config_loading(self, load_rpu_config): return super().load_state_dict(...)``."""
    for name, value in (("load_rpu_config", load_rpu_config), ("strict_rpu_config_check", strict_rpu_config_check)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"load_state_dict: {name} = {value!r}: expected None, True or False")
    if load_rpu_config is None and strict_rpu_config_check is None:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, AnalogLayerBase)]
    before = [layer.__dict__.get("load_options") for layer in layers]
    for layer in layers:
        layer.load_options = (load_rpu_config, strict_rpu_config_check)
    try:
        yield
    finally:
        for layer, old in zip(layers, before):
            if old is None:
                del layer.load_options  # back to the class's (None, None)
            else:
                layer.load_options = old


def load_state_dict(model: nn.Module, state_dict, strict: bool = True, assign: bool = False, *,
                    load_rpu_config: Optional[bool] = None, strict_rpu_config_check: Optional[bool] = None):
    """``model.load_state_dict(state_dict, strict, assign)`` for any model
    with analog layers, with aihwkit's options for the configs a checkpoint
    carries (``<layer>`` metadata ``fxanalog``: the rpu_config as plain data
    and the tile split; docs/tile.md, "Checkpoints"):

    * ``load_rpu_config=None`` (fxanalog's default): a layer saved with
      another config or split is an error naming the layer and every
      differing field;
    * ``True`` (aihwkit's default): the checkpoint's config replaces the
      layer's (the split must be the same);
    * ``False``: the layer keeps its config and loads the checkpoint's
      weights and analog state (shapes checked); the configs must be of the
      same class unless ``strict_rpu_config_check=False``.

    A checkpoint without the metadata (a digital model's, or a state dict
    rebuilt as a plain dict) loads unchecked."""
    with rpu_config_loading(model, load_rpu_config, strict_rpu_config_check):
        return model.load_state_dict(state_dict, strict=strict, assign=assign)


def _deployed_layers(model: nn.Module, what: str) -> list[tuple[str, "AnalogLayerBase"]]:
    """The analog layers of ``model``, checked to be in eval mode (all of
    them before any changes)."""
    layers = named_analog_layers(model)
    if not layers:
        raise ValueError(f"{what}: the model has no analog layers; convert it first (fxanalog.compile)")
    for _, layer in layers:
        layer.tile.check_deployed(what)
    return layers


def program_layers(model: nn.Module, noise_model=None) -> None:
    """``program_analog_weights`` of every analog layer of ``model``."""
    for _, layer in _deployed_layers(model, "program_analog_weights"):
        layer.program_analog_weights(noise_model)


def drift_layers(model: nn.Module, t_inference: float = 0.0) -> None:
    """``drift_analog_weights(t_inference)`` of every analog layer of ``model``."""
    if isinstance(t_inference, bool) or not isinstance(t_inference, (int, float)) or not t_inference >= 0:
        raise ValueError(f"drift_analog_weights: t_inference = {t_inference!r}: expected seconds >= 0")
    for _, layer in _deployed_layers(model, "drift_analog_weights"):
        layer.drift_analog_weights(t_inference)


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

    def _weight_view(self) -> Tensor:
        w = self.weight.t() if self.transposed else self.weight
        return w.unsqueeze(0)

    def matrix_to_weight(self, w: Tensor) -> Tensor:
        return w[0].t() if self.transposed else w[0]

    def as_matrices_of(self, weight: Tensor) -> Tensor:
        return (weight.t() if self.transposed else weight).unsqueeze(0)

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


# --------------------------------------------------------------------------
# Sequential


class AnalogSequential(nn.Sequential):
    """aihwkit's ``AnalogSequential``: an ``nn.Sequential`` with helpers that
    act on every analog layer inside it (at any depth)."""

    @classmethod
    def from_digital(cls, module: nn.Sequential, *args, **kwargs) -> "AnalogSequential":
        """An ``AnalogSequential`` of ``module``'s children (the same
        modules, same names)."""
        if not isinstance(module, nn.Sequential):
            raise TypeError(f"AnalogSequential.from_digital: expected an nn.Sequential, got {type(module).__name__}")
        return cls(OrderedDict(module.named_children()))

    def named_analog_layers(self) -> list[tuple[str, AnalogLayerBase]]:
        return named_analog_layers(self)

    def analog_layers(self) -> list[AnalogLayerBase]:
        return [layer for _, layer in named_analog_layers(self)]

    def analog_tiles(self) -> list[AnalogTile]:
        return [layer.tile for layer in self.analog_layers()]

    # aihwkit's names for the same
    analog_modules = analog_layers
    named_analog_modules = named_analog_layers

    def apply_to_analog_layers(self, fn) -> "AnalogSequential":
        """``fn(layer)`` for every analog layer; returns self."""
        for layer in self.analog_layers():
            fn(layer)
        return self

    def program_analog_weights(self, noise_model=None) -> None:
        """``program_analog_weights`` of every analog layer (eval mode)."""
        program_layers(self, noise_model)

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """``drift_analog_weights(t_inference)`` of every analog layer (eval mode)."""
        drift_layers(self, t_inference)

    def remap_analog_weights(self, weight_scaling_omega: Optional[float] = 1.0) -> None:
        """``remap_analog_weights(weight_scaling_omega)`` of every analog layer."""
        for layer in self.analog_layers():
            layer.remap_analog_weights(weight_scaling_omega)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False, *,
                        load_rpu_config: Optional[bool] = None, strict_rpu_config_check: Optional[bool] = None):
        """torch's ``load_state_dict`` with aihwkit's ``load_rpu_config`` and
        ``strict_rpu_config_check`` (see ``fxanalog.nn.load_state_dict``)."""
        with rpu_config_loading(self, load_rpu_config, strict_rpu_config_check):
            return super().load_state_dict(state_dict, strict, assign)
