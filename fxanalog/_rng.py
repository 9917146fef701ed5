"""Standard normals on CPU, drawn fast, on several threads, reproducibly.

torch's CPU normal fill runs on one thread (about 300 M normals/s on the
development machine), which is 15% of the GEMM of a one-tile forward at
2048 x 2048 x 256. Draws of at least ``MIN_NUMEL`` numbers are cut into
chunks of ``CHUNK`` numbers that are drawn in parallel:

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

Two generators draw a chunk:

* **float32, the native generator** (``native``, the C extension
  ``fxanalog._normal``, built at install): xoshiro256++ and the ziggurat
  method, about 3x torch's fill on one thread with AVX2 or AVX-512 and 1.4x
  in plain C (fxanalog/_normal.c says how). A chunk's state is 72 words of
  32 bits: nine xoshiro256++ generators of 256 bits (eight SIMD lanes and
  one for the rare rejected attempts). AVX-512, AVX2 and plain C draw the
  same numbers. It writes into the tensor's memory, so it is used only for
  tensors that autograd does not track. Without a C compiler at install,
  ``native`` is None and float32 takes the path below.
* **float64 (and float32 without the extension): torch's mt19937.** Every
  chunk gets a private ``torch.Generator`` whose full mt19937 state (624
  words) comes from the default generator; its numbers are exactly
  ``torch.randn`` from that generator. The state is written into
  ``Generator.set_state``'s byte layout (torch's ``CPUGeneratorImplState``:
  the 624 words as uint64 at byte 24, ``left`` as int32 at byte 8, ``next``
  as uint64 at byte 16, the cached-normal fields of the tail zeroed). That
  layout is checked once, at first use, against a generator seeded with
  ``manual_seed`` (see ``layout_check``); if it does not hold (another torch
  build), these draws fall back to plain ``torch.randn`` and the module flag
  ``layout_ok`` is False (logged at INFO level). Tests may set
  ``layout_ok = False`` to force the fallback, or ``native = None``.

Below ``MIN_NUMEL`` elements (``MIN_MT19937`` for the mt19937 chunks, whose
state copies cost more), for dtypes other than float32/float64, for
non-CPU devices, for non-contiguous, non-plain (fake, functional) or
autograd-tracked tensors and while compiling, the draw is plain torch (the
CUDA path is unchanged). Threads are used only when
``torch.get_num_threads() > 1``: the main thread and
``get_num_threads() - 1`` pool threads take chunks one at a time until none
is left (both generators release the GIL), so a thread that starts late
only takes fewer chunks. The pool is dropped in a forked child.

What threads buy depends on the machine: right after OpenMP work (a GEMM,
any parallel elementwise op) libgomp's idle worker spin-waits on the other
cores for a while (its default ``GOMP_SPINCOUNT``), so a small draw in the
middle of a forward gains less than a standalone one. Draws of millions of
normals (tile arrays) gain most.
"""

from __future__ import annotations

import logging
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

__all__ = ["randn", "normal_", "add_normal_", "layout_check", "CHUNK", "MIN_NUMEL", "MIN_MT19937", "native"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 16  # numbers per chunk: fixes the layout, never change per call
MIN_NUMEL = 1 << 15  # fewer elements: one plain torch.randn
MIN_MT19937 = 1 << 18  # the mt19937 chunks pay a state copy each: plain torch.randn below this
_ADD_BLOCK = 1 << 14  # adds in a worker stay below torch's intra-op grain (32768)
_FALLBACK_ADD_CHUNK = 1 << 20  # plain path: noise added 1M at a time (no second buffer of y's size)

_NATIVE_WORDS = 72  # 32-bit words of a native chunk's state
_WORDS = 624  # mt19937 state words
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState) on torch 2.x CPU
_OFF_LEFT, _OFF_NEXT, _OFF_WORDS = 8, 16, 24
_OFF_TAIL = _OFF_WORDS + 8 * _WORDS  # normal_x/y/rho, is_valid, float normal, its flag

layout_ok: Optional[bool] = None  # None: not checked yet
_template: Optional[Tensor] = None
_pool: Optional[ThreadPoolExecutor] = None
_pool_workers = 0
_lock = threading.Lock()


def _write_state(words: Tensor, template: Tensor) -> Tensor:
    """A new generator state: a copy of ``template`` (a ``get_state()``)
    whose mt19937 words are ``words`` (624 int64 in [0, 2^32)), positioned so
    that the next draw starts with a twist, as right after ``manual_seed``.
    (Its own storage: ``set_state`` of a view with an offset crashes torch.)"""
    state = template.clone()
    state[_OFF_WORDS:_OFF_TAIL].view(torch.int64).copy_(words)
    state[_OFF_LEFT : _OFF_LEFT + 4].view(torch.int32).fill_(1)  # left = 1: twist before the next word
    state[_OFF_NEXT : _OFF_NEXT + 8].view(torch.int64).fill_(0)  # next = 0
    state[_OFF_TAIL:].zero_()  # no cached normal (double or float)
    return state


def _read_words(state: Tensor) -> Tensor:
    return state[_OFF_WORDS:_OFF_TAIL].view(torch.int64).clone()


def layout_check() -> bool:
    """Whether ``Generator.set_state`` has the layout this module writes.

    A generator seeded with ``manual_seed`` and a fresh one whose state is
    written from the first one's 624 words (on top of a used state, with
    ``left``, ``next`` and a cached normal set) must draw the same numbers
    (float32 fill, double-sampled small draws, uniform words)."""
    global _template
    try:
        template = torch.Generator().get_state()
        if template.dtype != torch.uint8 or template.numel() != _STATE_BYTES:
            raise RuntimeError(f"state is {template.numel()} {template.dtype}, expected {_STATE_BYTES} uint8")
        for seed in (0, 20250611, 2**32 - 1):
            ref = torch.Generator().manual_seed(seed)
            used = torch.Generator().manual_seed(seed + 1)
            torch.randn(3, generator=used)  # leaves a cached normal and left/next mid-way
            copy = torch.Generator()
            copy.set_state(_write_state(_read_words(ref.get_state()), used.get_state()))
            for draw in (
                lambda g: torch.randn(5, generator=g),
                lambda g: torch.randn(1000, generator=g),
                lambda g: torch.randint(0, 2**32, (700,), generator=g),
            ):
                if not torch.equal(draw(ref), draw(copy)):
                    raise RuntimeError(f"draws differ after copying the state of manual_seed({seed})")
    except Exception as exc:  # any failure: plain torch.randn from now on
        logger.info("fxanalog._rng: generator state layout not as expected (%s); using plain torch.randn", exc)
        return False
    _template = _write_state(torch.zeros(_WORDS, dtype=torch.int64), template)
    return True


def _backend(numel: int, dtype: torch.dtype, device: torch.device, t: Optional[Tensor] = None) -> Optional[str]:
    """How a draw is made: "native", "mt19937" (chunked) or None (plain
    torch). Checks the mt19937 state layout once, at first use.
    ``t``: the tensor drawn into, if it exists already."""
    global layout_ok
    if not (
        numel >= MIN_NUMEL
        and device.type == "cpu"
        and dtype in (torch.float32, torch.float64)
        and (t is None or (type(t) is torch.Tensor and t.is_contiguous() and not t.requires_grad))
        and not torch.compiler.is_compiling()
    ):
        return None
    if dtype == torch.float32 and native is not None:
        return "native"
    if numel < MIN_MT19937:
        return None
    if layout_ok is None:
        with _lock:
            if layout_ok is None:
                layout_ok = layout_check()
    return "mt19937" if layout_ok else None


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


_local = threading.local()  # per thread: a generator and a noise buffer for mt19937 chunks


def _mt19937_draw(states: Tensor, std: Optional[float], dtype: torch.dtype):
    def draw(k: int, part: Tensor) -> None:
        gen = getattr(_local, "gen", None)
        if gen is None:
            gen = _local.gen = torch.Generator()
        gen.set_state(states[k].clone())  # own storage (see _write_state)
        if std is None:
            part.normal_(generator=gen)
            return
        buf = getattr(_local, "buf", None)  # reused: a fresh 64 K buffer per chunk costs page faults
        if buf is None or buf.dtype != dtype:
            buf = _local.buf = torch.empty(CHUNK, dtype=dtype)
        noise = buf[: part.numel()].normal_(generator=gen)
        for s in range(0, part.numel(), _ADD_BLOCK):  # serial adds: no nested intra-op threads
            part[s : s + _ADD_BLOCK].add_(noise[s : s + _ADD_BLOCK], alpha=std)

    return draw


def _chunked(flat: Tensor, std: Optional[float], backend: str) -> None:
    """Fill ``flat`` (std None) or add ``std`` times normals to it, chunk by chunk."""
    chunks = -(-flat.numel() // CHUNK)
    if backend == "native":
        words = torch.randint(0, 2**32, (chunks, _NATIVE_WORDS), dtype=torch.int64)  # from the default generator
        draw = _native_draw(words, std)
    else:
        words = torch.randint(0, 2**32, (chunks, _WORDS), dtype=torch.int64)  # from the default generator
        states = _template.repeat(chunks, 1)
        states.view(torch.int64)[:, _OFF_WORDS // 8 : _OFF_TAIL // 8] = words
        draw = _mt19937_draw(states, std, flat.dtype)
    job = _Job(flat, chunks, draw)
    threads = min(torch.get_num_threads(), chunks)
    if threads > 1:
        pool = _get_pool(threads - 1)
        for _ in range(threads - 1):
            pool.submit(job.run)
    job.run()
    job.wait()  # (the states stay alive until here)


def normal_(t: Tensor) -> Tensor:
    """Fill ``t`` with N(0, 1) numbers in place and return it (see the module
    docstring for when the draw is chunked and parallel)."""
    backend = _backend(t.numel(), t.dtype, t.device, t)
    if backend:
        _chunked(t.view(-1), None, backend)
    else:
        t.normal_()
    return t


def randn(shape: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``torch.randn(shape, dtype=dtype, device=device)``, drawn as ``normal_``."""
    device = torch.get_default_device() if device is None else torch.device(device)
    backend = _backend(math.prod(shape), dtype, device)
    if backend:
        t = torch.empty(shape, dtype=dtype, device=device)
        if type(t) is not torch.Tensor:  # a fake or functional tensor (a tensor mode is on): no memory to fill
            return t.normal_()
        _chunked(t.view(-1), None, backend)
        return t
    return torch.randn(shape, dtype=dtype, device=device)


def add_normal_(y: Tensor, std: float) -> Tensor:
    """``y += std * xi`` in place, ``xi`` N(0, 1), never holding a second
    buffer of ``y``'s size. Chunked: ``xi`` is exactly what ``normal_`` would
    draw for ``y``'s size. Plain: ``torch.randn`` 1M numbers at a time."""
    backend = _backend(y.numel(), y.dtype, y.device, y)
    if backend:
        _chunked(y.view(-1), float(std), backend)
        return y
    flat = y.view(-1) if y.is_contiguous() else None
    if flat is None:
        return y.add_(torch.randn_like(y), alpha=std)
    for start in range(0, flat.numel(), _FALLBACK_ADD_CHUNK):
        part = flat[start : start + _FALLBACK_ADD_CHUNK]
        part.add_(torch.randn(part.shape, dtype=y.dtype, device=y.device), alpha=std)
    return y
