"""Triton GPU kernels of the analog tile ops: one op per file, each with its
kernels and launcher (``launch``) and the ``supports`` check the op layer
registers them with (``fxanalog.ops``, which also dispatches: CUDA tensors
to these kernels, everything else to the torch path). ``streams`` holds the
named random streams every kernel draws from; ``utils`` the block-size
heuristic and piece tables.

Importing a module of this package imports Triton.
"""
