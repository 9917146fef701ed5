"""Standard normals on CPU, drawn on several threads, reproducibly.

torch's CPU normal fill runs on one thread (about 300 M normals/s on the
development machine), which is 15% of the GEMM of a one-tile forward at
2048 x 2048 x 256. Large draws here are cut into chunks of ``CHUNK`` numbers
that are drawn in parallel, each from a private ``torch.Generator``:

* The chunk layout depends only on the number of elements: chunk ``k`` is
  elements ``[k CHUNK, (k+1) CHUNK)`` of the flattened tensor (the last one
  shorter). The thread count only decides which thread draws which chunk,
  so a seed gives the same numbers with 1, 2 or 16 threads.
* Every chunk's generator gets a full mt19937 state (624 words of 32 bits)
  drawn from torch's default CPU generator, in one ``torch.randint(0, 2**32)``
  call of 624 values per chunk (each value takes two mt19937 outputs). ``torch.manual_seed(s)`` (and
  ``fxanalog.manual_seed(s)``) therefore fixes every number, and the default
  generator moves on, so consecutive calls differ. 32-bit per-chunk *seeds*
  are not used on purpose: torch seeds mt19937 from 32 bits only, so among
  many chunks two would, by the birthday bound, start the same stream.
* Each chunk's numbers are exactly ``torch.randn`` from that generator, so
  the per-number distribution is torch's.

The state is written into ``Generator.set_state``'s byte layout (torch's
``CPUGeneratorImplState``: the 624 words as uint64 at byte 24, ``left`` as
int32 at byte 8, ``next`` as uint64 at byte 16, the cached-normal fields of
the tail zeroed). That layout is checked once, at first use, against a
generator seeded with ``manual_seed`` (see ``layout_check``); if it does not
hold (another torch build), every draw falls back to plain ``torch.randn``
and the module flag ``layout_ok`` is False (logged at INFO level). Tests may
set ``layout_ok = False`` to force the fallback.

Below ``MIN_PARALLEL`` elements, for dtypes other than float32/float64, for
non-CPU devices, for non-contiguous or non-plain (fake, functional) tensors
and while compiling, the draw is plain torch (the CUDA path is unchanged).
Threads are used only when ``torch.get_num_threads() > 1``: the main thread
and ``get_num_threads() - 1`` pool threads take chunks one at a time until
none is left (torch's fill releases the GIL), so a thread that starts late
only takes fewer chunks. The pool is dropped in a forked child.

What it buys depends on the machine: on the 2-core development machine a
standalone draw of 0.5 M normals goes from 1.75 ms to about 1.05 ms, but
right after OpenMP work (a GEMM, any parallel elementwise op) libgomp's
idle worker spin-waits on the second core for several ms (its default
``GOMP_SPINCOUNT``), and a draw of that size in the middle of a forward
gains little. Draws of millions of normals (tile arrays) gain most.
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

__all__ = ["randn", "normal_", "add_normal_", "layout_check", "CHUNK", "MIN_PARALLEL"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 16  # numbers per chunk: fixes the layout, never change per call
MIN_PARALLEL = 1 << 18  # fewer elements: one plain torch.randn
_ADD_BLOCK = 1 << 14  # adds in a worker stay below torch's intra-op grain (32768)
_FALLBACK_ADD_CHUNK = 1 << 20  # plain path: noise added 1M at a time (no second buffer of y's size)

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


def _parallel(numel: int, dtype: torch.dtype, device: torch.device, t: Optional[Tensor] = None) -> bool:
    """Whether a draw is chunked (checks the layout once, at first use).
    ``t``: the tensor drawn into, if it exists already."""
    global layout_ok
    if not (
        numel >= MIN_PARALLEL
        and device.type == "cpu"
        and dtype in (torch.float32, torch.float64)
        and (t is None or (type(t) is torch.Tensor and t.is_contiguous()))
        and not torch.compiler.is_compiling()
    ):
        return False
    if layout_ok is None:
        with _lock:
            if layout_ok is None:
                layout_ok = layout_check()
    return bool(layout_ok)


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
    a chunk never changes its numbers."""

    def __init__(self, flat: Tensor, std: Optional[float], states: Tensor):
        self.flat, self.std, self.states = flat, std, states
        self.chunks = states.shape[0]
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
        gen, buf = torch.Generator(), None
        n = self.flat.numel()
        while True:
            k = self.take()
            if k >= self.chunks:
                return
            try:
                gen.set_state(self.states[k].clone())  # own storage (see _write_state)
                part = self.flat[k * CHUNK : min(n, (k + 1) * CHUNK)]
                if self.std is None:
                    part.normal_(generator=gen)
                else:
                    if buf is None:
                        buf = torch.empty(CHUNK, dtype=self.flat.dtype)
                    noise = buf[: part.numel()].normal_(generator=gen)
                    for s in range(0, part.numel(), _ADD_BLOCK):  # serial adds: no nested intra-op threads
                        part[s : s + _ADD_BLOCK].add_(noise[s : s + _ADD_BLOCK], alpha=self.std)
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


def _chunked(flat: Tensor, std: Optional[float]) -> None:
    """Fill ``flat`` (std None) or add ``std`` times normals to it, chunk by chunk."""
    chunks = -(-flat.numel() // CHUNK)
    words = torch.randint(0, 2**32, (chunks, _WORDS), dtype=torch.int64)  # from the default generator
    states = _template.repeat(chunks, 1)
    states.view(torch.int64)[:, _OFF_WORDS // 8 : _OFF_TAIL // 8] = words
    job = _Job(flat, std, states)
    threads = min(torch.get_num_threads(), chunks)
    if threads > 1:
        pool = _get_pool(threads - 1)
        for _ in range(threads - 1):
            pool.submit(job.run)
    job.run()
    job.wait()


def normal_(t: Tensor) -> Tensor:
    """Fill ``t`` with N(0, 1) numbers in place and return it (see the module
    docstring for when the draw is chunked and parallel)."""
    if _parallel(t.numel(), t.dtype, t.device, t):
        _chunked(t.view(-1), None)
    else:
        t.normal_()
    return t


def randn(shape: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``torch.randn(shape, dtype=dtype, device=device)``, drawn as ``normal_``."""
    device = torch.get_default_device() if device is None else torch.device(device)
    if _parallel(math.prod(shape), dtype, device):
        t = torch.empty(shape, dtype=dtype, device=device)
        _chunked(t.view(-1), None)
        return t
    return torch.randn(shape, dtype=dtype, device=device)


def add_normal_(y: Tensor, std: float) -> Tensor:
    """``y += std * xi`` in place, ``xi`` N(0, 1), never holding a second
    buffer of ``y``'s size. Chunked: ``xi`` is exactly what ``normal_`` would
    draw for ``y``'s size. Plain: ``torch.randn`` 1M numbers at a time."""
    if _parallel(y.numel(), y.dtype, y.device, y):
        _chunked(y.view(-1), float(std))
        return y
    flat = y.view(-1) if y.is_contiguous() else None
    if flat is None:
        return y.add_(torch.randn_like(y), alpha=std)
    for start in range(0, flat.numel(), _FALLBACK_ADD_CHUNK):
        part = flat[start : start + _FALLBACK_ADD_CHUNK]
        part.add_(torch.randn(part.shape, dtype=y.dtype, device=y.device), alpha=std)
    return y
