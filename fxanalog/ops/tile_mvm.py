"""The custom op ``fxanalog::tile_mvm``: the analog matrix-vector product of a
tile array, registered with torch.library so that graphs containing it run
under ``torch.compile`` and ``torch.export`` without graph breaks.

Schema::

    fxanalog::tile_mvm(Tensor x, Tensor tiles, int[] in_sizes, int[] out_sizes,
                       Tensor? col_scale, Tensor? bias,
                       float[] forward_io, float[] backward_io, int update_key) -> Tensor

``x`` is ``(G, B, K)``, ``tiles`` ``(G, n_in, p_in, N)`` (see
``fxanalog.geometry``), the result ``(G, B, N)`` in ``x``'s dtype.
``forward_io`` and ``backward_io`` are ``IOParameters`` packed by
``TileIO.pack``. Implementations: ``fxanalog.ops.tile_mvm_torch.tile_forward``
(any device) and, where Triton runs, ``fxanalog.triton_kernels.tile_mvm``
(``fxanalog.ops.dispatch`` picks one per call).

Autograd: straight-through through quantization, noise and clipping. The
input gradient is the transposed MVM of the tiles (noisy when the backward
IOParameters are not perfect, computed through the same dispatch), the
weight gradient ``grad^T x``, as in aihwkit's tiles. With ``update_key >= 0``
the backward also hands ``(x, d)`` (the op's raw input and the gradient of
its output in tile units) to the tile registered under that key, through the
effectful op ``fxanalog::tile_record`` (``fxanalog.ops.tile_record``): the
contract by which a pulsed update receives its data, see docs/architecture.md.

Transforms: ``torch.func.vmap`` runs through the op (torch loops over the
mapped dimension; tested against a loop, over inputs and over stacked
parameters). ``torch.func``'s differentiating transforms (``grad``, ``vjp``,
``jacrev``, ``jvp``, ``jacfwd``, ``hessian``) do not, and the tile refuses them
before calling the op with an error naming it (``check_transforms``):
differentiate with ``torch.autograd``. ``torch.jit.script`` of a model with
analog layers raises ``scripting_error``: use ``torch.compile`` or
``torch.export``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from fxanalog.geometry import layout_tiles, per_output, unlayout_tiles
from fxanalog.ops import dispatch
from fxanalog.ops.io import TileIO
from fxanalog.ops.tile_mvm_torch import compute_dtype, tile_forward
from fxanalog.ops.tile_record import note_ddp_group, record

__all__ = ["tile_mvm", "mvm", "forward", "NO_UPDATE", "check_transforms", "scripting_error"]

NO_UPDATE = -1  # update_key of a call whose (x, d) no tile records

dispatch.register("tile_mvm", "torch", tile_forward)
if dispatch.triton_available():
    from fxanalog.triton_kernels import tile_mvm as _triton

    dispatch.register("tile_mvm", "triton", _triton.launch, supports=_triton.supports)


def forward(x: Tensor, tiles: Tensor, in_sizes: Sequence[int], out_sizes: Sequence[int], io: TileIO,
            col_scale: Optional[Tensor] = None, bias: Optional[Tensor] = None) -> Tensor:
    """The forward of a tile array by the implementation the dispatch picks:
    (G, B, K) inputs, (G, n_in, p_in, N) tiles -> (G, B, N) float."""
    impl = dispatch.select("tile_mvm", x, x, tiles, io)
    return impl.function(x, tiles, in_sizes, out_sizes, io, col_scale, bias)


def _tile_mvm(
    x: Tensor,
    tiles: Tensor,
    in_sizes: list[int],
    out_sizes: list[int],
    col_scale: Optional[Tensor],
    bias: Optional[Tensor],
    forward_io: list[float],
    backward_io: list[float],
    update_key: int,
) -> Tensor:
    y = forward(x, tiles, in_sizes, out_sizes, TileIO.unpack(forward_io), col_scale, bias)
    # A fresh tensor, never a view of another: the caller may modify it in place.
    return y.to(x.dtype) if y.dtype != x.dtype else y


tile_mvm = torch.library.custom_op("fxanalog::tile_mvm", mutates_args=(),
                                   tags=(torch.Tag.nondeterministic_seeded,))(_tile_mvm)


@tile_mvm.register_fake
def _(x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io, update_key):
    G, B, _ = x.shape
    return x.new_empty((G, B, tiles.shape[-1]))


def _setup_context(ctx, inputs, output):
    x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io, update_key = inputs
    if col_scale is not None and col_scale.requires_grad:
        raise RuntimeError(
            "fxanalog::tile_mvm: col_scale is a fixed digital factor; apply learnable "
            "output scales outside the op"
        )
    ctx.save_for_backward(x, tiles, col_scale)
    ctx.in_sizes, ctx.out_sizes = list(in_sizes), list(out_sizes)
    ctx.forward_io, ctx.backward_io = list(forward_io), list(backward_io)
    ctx.has_bias = bias is not None
    ctx.update_key = update_key
    if update_key != NO_UPDATE:  # inside a DDP forward? (the optimizer step gathers the ranks' rows)
        note_ddp_group(update_key)


def _backward(ctx, grad):
    x, tiles, col_scale = ctx.saved_tensors
    fio, bio = TileIO.unpack(ctx.forward_io), TileIO.unpack(ctx.backward_io)
    N = tiles.shape[-1]
    ct = compute_dtype(grad.dtype)
    # d: the gradient of the tile's own output (before the digital factors)
    d = grad.to(ct)
    if fio.out_scale != 1:
        d = d * fio.out_scale
    if col_scale is not None:
        d = d * per_output(col_scale.to(ct), N, "result")
    if ctx.update_key != NO_UPDATE:
        record(x, d, ctx.update_key)
    grad_x = grad_tiles = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = _transposed_mvm(d, tiles, ctx.in_sizes, ctx.out_sizes, bio).to(x.dtype)
    if ctx.needs_input_grad[1] and ctx.update_key == NO_UPDATE:
        # dL/dW = d^T x per group, laid out like the tiles (pads get zero).
        # (A recording tile's weights move by its pulsed update instead: no gradient.)
        gw = torch.matmul(d.transpose(1, 2), x.to(ct))  # (G, N, K)
        grad_tiles = layout_tiles(gw, ctx.in_sizes).to(tiles.dtype)
    if ctx.has_bias and ctx.needs_input_grad[5]:
        grad_bias = grad.sum(dim=1).reshape(-1)
    return grad_x, grad_tiles, None, None, None, grad_bias, None, None, None


def _transposed_mvm(d: Tensor, tiles: Tensor, in_sizes: Sequence[int], out_sizes: Sequence[int],
                    io: TileIO) -> Tensor:
    """The input gradient of (G, B, N) ``d``: the MVM of the transposed tile
    array with the backward periphery ``io``. Returns (G, B, K)."""
    w = unlayout_tiles(tiles.to(d.dtype), in_sizes)  # (G, N, K)
    if io.is_perfect:
        return torch.matmul(d, w) * io.out_scale
    wt = layout_tiles(w.transpose(1, 2).contiguous(), out_sizes)  # the N outputs become inputs
    return forward(d, wt, out_sizes, in_sizes, io)


tile_mvm.register_autograd(_backward, setup_context=_setup_context)


class _EagerTileMVM(torch.autograd.Function):
    """``fxanalog::tile_mvm`` in plain eager mode without the dispatcher: the
    op's own forward, context and backward (the functions registered above),
    called by ``torch.autograd.Function`` directly. The op's wrapper costs
    tens of microseconds a call (argument defaults, the autograd wrapper's
    checks, a redispatch), as much as a small tile's whole MVM."""

    @staticmethod
    def forward(ctx, x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io, update_key):
        inputs = (x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io, update_key)
        y = _tile_mvm(*inputs)
        _setup_context(ctx, inputs, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        return _backward(ctx, grad)


def mvm(x: Tensor, tiles: Tensor, in_sizes: list[int], out_sizes: list[int], col_scale: Optional[Tensor],
        bias: Optional[Tensor], forward_io: list[float], backward_io: list[float], update_key: int) -> Tensor:
    """``torch.ops.fxanalog.tile_mvm(...)``, the same arguments and result:
    in plain eager mode (``dispatch.plain_eager``) the op's functions run
    directly (``_EagerTileMVM``); otherwise the op is called, so that
    tracers, fake tensors and transforms see it."""
    if dispatch.plain_eager(x, tiles, col_scale, bias):
        return _EagerTileMVM.apply(x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io,
                                   update_key)
    return torch.ops.fxanalog.tile_mvm(x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io,
                                       update_key)


def check_transforms(where: str) -> None:
    """Refuse, with a clear error naming the op, the ``torch.func``
    transforms that cannot run through ``fxanalog::tile_mvm``; called by the
    tile before every call of the op.

    * Reverse mode (``torch.func.grad``, ``vjp``, ``jacrev``, ``hessian``):
      torch refuses an op whose backward comes from
      ``torch.library.register_autograd`` under these transforms, with an
      error about ``setup_context`` that names neither the op nor a way out
      (pytorch issue 170834).
    * Forward mode (``torch.func.jvp``, ``jacfwd``): the op has no
      forward-mode formula, and torch would return zero tangents without a
      word.

    ``torch.func.vmap`` alone runs (torch loops over the mapped dimension,
    and each slice gets its own noise draws); ``torch.autograd`` (``backward``,
    ``torch.autograd.grad``, ``torch.autograd.functional.jacobian``) is the
    way to differentiate."""
    if not torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    kinds = {i.key() for i in retrieve_all_functorch_interpreters()}
    if TransformType.Jvp in kinds:
        raise NotImplementedError(
            f"analog layer {where!r}: forward-mode differentiation (torch.func.jvp, torch.func.jacfwd, "
            "torch.func.hessian) through the analog op fxanalog::tile_mvm is not supported: the op has no "
            "forward-mode formula. Differentiate with torch.autograd instead (loss.backward(), torch.autograd.grad, "
            "torch.autograd.functional.jacobian(f, x))"
        )
    if TransformType.Grad in kinds:
        raise NotImplementedError(
            f"analog layer {where!r}: torch.func.grad, torch.func.vjp and torch.func.jacrev do not run through the "
            "analog op fxanalog::tile_mvm (torch refuses ops whose backward comes from "
            "torch.library.register_autograd under torch.func's reverse-mode transforms). Differentiate with "
            "torch.autograd instead (loss.backward(), torch.autograd.grad, torch.autograd.functional.jacobian(f, x)); "
            "torch.func.vmap alone is supported"
        )


def scripting_error(where: str) -> RuntimeError:
    """The error ``torch.jit.script`` of a model with analog layers raises
    (through ``__prepare_scriptable__``): TorchScript cannot compile the
    op's Python callers; torch.compile and torch.export can."""
    return RuntimeError(
        f"torch.jit.script: analog layer {where!r} (its tile calls the custom op fxanalog::tile_mvm) cannot be "
        "scripted: TorchScript is not supported by fxanalog (and is deprecated in torch). Use torch.compile(model) (or "
        "torch.compile(model, backend='fxanalog') on the digital model) or torch.export.export(model, args)"
    )
