"""Random numbers of the Triton kernels: named streams of Philox.

Every kernel call draws one 31-bit seed from torch's generator of the
tensors' device (``call_seed``: a device tensor, no host synchronisation),
so ``torch.manual_seed`` fixes every draw and each call draws anew. Inside a
kernel a draw is ``tl.rand``/``tl.randn(key, counter)``: the *key* names
what the draw is for and the *counter* which element it belongs to.

The key (``stream_key``) holds the call's seed in its low 32 bits and, in
the high 32 bits, the stream: (round, purpose, tile) where the purpose is a
``Stream`` member, the round the bound-management round of the MVM or the
batch row of the update, and the tile the (group, piece) index. Counters are the
element's position inside its tile (row x inputs or columns), so a draw
depends only on what it is for, never on which program computes it: the
input noise of a row is the same in every column block that reads it.

A new random quantity gets a new ``Stream`` member (and the kernels use the
member's constant below), never a literal number.
"""

from __future__ import annotations

import enum

import torch
import triton
import triton.language as tl

__all__ = ["Stream", "STREAMS", "call_seed", "stream_key", "key_fits"]


class Stream(enum.IntEnum):
    """What a random draw of the kernels is for."""

    INPUT_ROUNDING = 0  # MVM: stochastic rounding at the DAC
    INPUT_NOISE = 1  # MVM: additive noise after the DAC
    OUTPUT_NOISE = 2  # MVM: output noise before the ADC (with the weight noise folded in)
    WEIGHT_NOISE = 3  # MVM: weight read noise drawn on its own (before an ADC nonlinearity)
    OUTPUT_ROUNDING = 4  # MVM: stochastic rounding at the ADC
    INPUT_TRAIN = 5  # update: the pulse trains of the input lines
    ERROR_TRAIN = 6  # update: the pulse trains of the error lines
    PULSE_NOISE = 7  # update: the cycle-to-cycle noise of each pulse


STREAMS = len(Stream)

# The members as Triton constants (kernels cannot read a Python enum).
INPUT_ROUNDING = tl.constexpr(int(Stream.INPUT_ROUNDING))
INPUT_NOISE = tl.constexpr(int(Stream.INPUT_NOISE))
OUTPUT_NOISE = tl.constexpr(int(Stream.OUTPUT_NOISE))
WEIGHT_NOISE = tl.constexpr(int(Stream.WEIGHT_NOISE))
OUTPUT_ROUNDING = tl.constexpr(int(Stream.OUTPUT_ROUNDING))
INPUT_TRAIN = tl.constexpr(int(Stream.INPUT_TRAIN))
ERROR_TRAIN = tl.constexpr(int(Stream.ERROR_TRAIN))
PULSE_NOISE = tl.constexpr(int(Stream.PULSE_NOISE))
_N_STREAMS = tl.constexpr(STREAMS)


def call_seed(device: torch.device) -> torch.Tensor:
    """One seed for a kernel call, a (1,) int64 tensor on ``device`` drawn
    from that device's torch generator."""
    return torch.randint(0, 2**31 - 1, (1,), device=device, dtype=torch.int64)


def key_fits(rounds: int, tiles: int) -> bool:
    """The high word of every key of a call with ``rounds`` rounds and
    ``tiles`` tiles stays below 2^31 (so keys never collide)."""
    return rounds * STREAMS * tiles < 2**31


@triton.jit
def stream_key(seed, rnd, stream, tiles, tile):
    """Philox key of one stream: the call's ``seed`` in the low word;
    round ``rnd`` (the bound-management round of the MVM, the batch row of
    the update), the ``stream`` (a ``Stream`` constant) and ``tile`` (of
    ``tiles``) in the high word, computed in 64 bits (a 32-bit shift by 32
    would drop it). Counters stay 32-bit, which keeps the generator's
    registers low."""
    high = (tl.cast(rnd, tl.int64) * _N_STREAMS + stream) * tiles + tile
    return seed + (high << 32)
