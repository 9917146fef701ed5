"""Standard normals on CPU, drawn fast, on several threads, reproducibly.

torch's CPU normal fill runs on one thread (about 300 M normals/s on the
development machine), which is 15% of the GEMM of a one-tile forward at
2048 x 2048 x 256. float32 draws of at least ``MIN_NUMEL`` numbers are
therefore drawn by the native generator (``native``, the C extension
``fxanalog._normal``, built at install), in chunks of ``CHUNK`` numbers
drawn in parallel:

* The chunk layout depends only on the number of elements: chunk ``k`` is
  elements ``[k CHUNK, (k+1) CHUNK)`` of the flattened tensor (the last one
  shorter). The thread count only decides which thread draws which chunk,
  so a seed gives the same numbers with 1, 2 or 16 threads.
* Every chunk's generator state is drawn from torch's default CPU generator,
  all chunks in one ``torch.randint(0, 2**32)`` call. ``torch.manual_seed(s)``
  (and ``fxanalog.manual_seed(s)``) therefore fixes every number, and the
  default generator moves on, so consecutive calls differ. Full states are
  drawn, not short seeds: among many chunks, two 32-bit seeds would, by the
  birthday bound, start the same stream.
* The generator: xoshiro256++ and the ziggurat method, about 3x torch's fill
  on one thread with AVX2 or AVX-512 and 1.4x in plain C (fxanalog/_normal.c
  says how). A chunk's state is 72 words of 32 bits: nine xoshiro256++
  generators of 256 bits (eight SIMD lanes and one for the rare rejected
  attempts). AVX-512, AVX2 and plain C draw the same numbers. It writes into
  the tensor's memory, so it is used only for tensors that autograd does
  not track.

Everything else is plain torch, from the default generator, on one thread
and not chunked (the fallback): float64 and other dtypes, float32 when the C
extension was not built (no C compiler at install: ``native`` is None; tests
may set ``native = None`` to force the fallback), fewer than ``MIN_NUMEL``
elements, non-CPU devices (the CUDA path is unchanged), non-contiguous,
non-plain (fake, functional) or autograd-tracked tensors, and while
compiling. ``randn`` and ``normal_`` are then exactly ``torch.randn`` and
``Tensor.normal_``; ``add_normal_`` adds ``torch.randn`` numbers in pieces
of at most ``_FALLBACK_ADD_CHUNK`` elements (the pieces in the order of
``y``'s elements), so that it never holds a second buffer of ``y``'s size.
The fallback uses only torch's public API.

Threads are used only when ``torch.get_num_threads() > 1``: the main thread
and ``get_num_threads() - 1`` pool threads take chunks one at a time until
none is left (the native generator releases the GIL), so a thread that
starts late only takes fewer chunks. The pool is dropped in a forked child.

What threads buy depends on the machine: right after OpenMP work (a GEMM,
any parallel elementwise op) libgomp's idle worker spin-waits on the other
cores for a while (its default ``GOMP_SPINCOUNT``), so a small draw in the
middle of a forward gains less than a standalone one. Draws of millions of
normals (tile arrays) gain most.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import torch
from torch import Tensor

try:  # the native float32 generator (fxanalog/_normal.c); optional at install
    from fxanalog import _normal as native
except ImportError:  # pragma: no cover - only without a C compiler at install
    native = None

__all__ = ["randn", "normal_", "add_normal_", "CHUNK", "MIN_NUMEL", "native"]

CHUNK = 1 << 16  # numbers per chunk: fixes the layout, never change per call
MIN_NUMEL = 1 << 15  # fewer elements: one plain torch.randn
_FALLBACK_ADD_CHUNK = 1 << 20  # fallback: noise added 1M at a time (no second buffer of y's size)

_NATIVE_WORDS = 72  # 32-bit words of a native chunk's state
_pool: Optional[ThreadPoolExecutor] = None
_pool_workers = 0
_lock = threading.Lock()


def _use_native(numel: int, dtype: torch.dtype, device: torch.device, t: Optional[Tensor] = None) -> bool:
    """Whether a draw is made by the native generator in chunks (else it is
    plain torch). ``t``: the tensor drawn into, if it exists already."""
    return (
        native is not None
        and numel >= MIN_NUMEL
        and dtype == torch.float32
        and device.type == "cpu"
        and (t is None or (type(t) is torch.Tensor and t.is_contiguous() and not t.requires_grad))
        and not torch.compiler.is_compiling()
    )


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fxanalog-rng")
            _pool_workers = workers
        return _pool


def _drop_pool_in_child() -> None:
    global _pool, _pool_workers, _lock
    _pool, _pool_workers, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_pool_in_child)


class _Job:
    """One chunked draw: chunks are handed out one at a time to whichever
    thread asks (the main thread and the pool's), so a thread that the OS
    starts late (on a core still busy with torch's OpenMP threads, say)
    takes fewer chunks instead of holding the others up. Which thread draws
    a chunk never changes its numbers: ``draw(k, part)`` draws chunk ``k``
    into ``part``, its slice of ``flat``, from that chunk's own state."""

    def __init__(self, flat: Tensor, chunks: int, draw):
        self.flat, self.chunks, self.draw = flat, chunks, draw
        self.next = self.done = 0
        self.error: Optional[BaseException] = None
        self.cond = threading.Condition()

    def take(self) -> int:
        with self.cond:
            k = self.next
            self.next += 1
            return k

    def run(self) -> None:
        """Draw chunks until none is left (any thread)."""
        n = self.flat.numel()
        while True:
            k = self.take()
            if k >= self.chunks:
                return
            try:
                self.draw(k, self.flat[k * CHUNK : min(n, (k + 1) * CHUNK)])
            except BaseException as exc:
                with self.cond:
                    self.error = self.error or exc
                    self.cond.notify_all()
                raise
            with self.cond:
                self.done += 1
                if self.done == self.chunks:
                    self.cond.notify_all()

    def wait(self) -> None:
        """Until every chunk is drawn (a worker that never started is not waited for)."""
        with self.cond:
            while self.done < self.chunks and self.error is None:
                self.cond.wait()
        if self.error is not None:
            raise self.error


def _native_draw(words: Tensor, std: Optional[float]):
    """Draws chunk k from row k of ``words`` (chunks x 72 words of 32 bits
    from the default generator, as int64; fxanalog/_normal.c says how they
    make the nine xoshiro256++ states). The caller keeps ``words`` alive
    until every chunk is drawn (the draw holds only its address, so that the
    tensor is freed by the calling thread)."""
    base, stride = words.data_ptr(), words.shape[1] * words.element_size()
    scale, add = (0.0, False) if std is None else (std, True)

    def draw(k: int, part: Tensor) -> None:
        native.normal_f32(part.data_ptr(), part.numel(), base + k * stride, scale, add)

    return draw


def _chunked(flat: Tensor, std: Optional[float]) -> None:
    """Fill ``flat`` (std None) or add ``std`` times normals to it, chunk by
    chunk, with the native generator."""
    chunks = -(-flat.numel() // CHUNK)
    words = torch.randint(0, 2**32, (chunks, _NATIVE_WORDS), dtype=torch.int64)  # from the default generator
    if chunks == 1:  # one chunk: drawn here, without the job's bookkeeping (the same numbers)
        _native_draw(words, std)(0, flat)
        return
    job = _Job(flat, chunks, _native_draw(words, std))
    threads = min(torch.get_num_threads(), chunks)
    if threads > 1:
        pool = _get_pool(threads - 1)
        for _ in range(threads - 1):
            pool.submit(job.run)
    job.run()
    job.wait()  # (the states stay alive until here)


def _add_randn_pieces(y: Tensor, std: float) -> None:
    """The fallback of ``add_normal_``: ``y += std * torch.randn(piece)``
    piece by piece, each piece at most ``_FALLBACK_ADD_CHUNK`` elements, the
    pieces in the order of ``y``'s elements (row-major)."""
    n = y.numel()
    if n <= _FALLBACK_ADD_CHUNK or y.dim() == 0:
        y.add_(torch.randn(y.shape, dtype=y.dtype, device=y.device), alpha=std)
    elif y.is_contiguous():
        flat = y.view(-1)
        for start in range(0, n, _FALLBACK_ADD_CHUNK):
            part = flat[start : start + _FALLBACK_ADD_CHUNK]
            part.add_(torch.randn(part.shape, dtype=y.dtype, device=y.device), alpha=std)
    else:  # whole slices along the first dimension, or each slice in pieces
        per_row = n // y.shape[0]
        if per_row >= _FALLBACK_ADD_CHUNK:
            for i in range(y.shape[0]):
                _add_randn_pieces(y[i], std)
        else:
            rows = _FALLBACK_ADD_CHUNK // per_row
            for start in range(0, y.shape[0], rows):
                _add_randn_pieces(y[start : start + rows], std)


def normal_(t: Tensor) -> Tensor:
    """Fill ``t`` with N(0, 1) numbers in place and return it (see the module
    docstring for when the draw is native and chunked; else ``t.normal_()``)."""
    if _use_native(t.numel(), t.dtype, t.device, t):
        _chunked(t.view(-1), None)
    else:
        t.normal_()
    return t


def randn(shape: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``torch.randn(shape, dtype=dtype, device=device)``, drawn as ``normal_``."""
    device = torch.get_default_device() if device is None else torch.device(device)
    if _use_native(math.prod(shape), dtype, device):
        t = torch.empty(shape, dtype=dtype, device=device)
        if type(t) is not torch.Tensor:  # a fake or functional tensor (a tensor mode is on): no memory to fill
            return t.normal_()
        _chunked(t.view(-1), None)
        return t
    return torch.randn(shape, dtype=dtype, device=device)


def add_normal_(y: Tensor, std: float) -> Tensor:
    """``y += std * xi`` in place, ``xi`` N(0, 1), never holding a second
    buffer of ``y``'s size. Native: ``xi`` is exactly what ``normal_`` would
    draw for ``y``'s size. Fallback: ``torch.randn`` at most 1M numbers at a
    time (see ``_add_randn_pieces``)."""
    if _use_native(y.numel(), y.dtype, y.device, y):
        _chunked(y.view(-1), float(std))
    else:
        _add_randn_pieces(y, float(std))
    return y
