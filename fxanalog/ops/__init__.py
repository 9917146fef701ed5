"""The op layer: the tile ops, registered with torch.library, and the
dispatch that sends each call to its torch or Triton implementation.

* ``fxanalog::tile_mvm`` (``tile_mvm.py``; torch path ``tile_mvm_torch.py``,
  Triton kernel ``fxanalog.triton_kernels.tile_mvm``): the analog MVM of a
  tile array, with its autograd;
* ``fxanalog::tile_record`` (``tile_record.py``): hands a training step's
  (x, d) from the MVM's backward to the tile that will update with them;
* ``fxanalog::tile_update`` (``tile_update.py``; torch path
  ``tile_update_torch.py``): the pulsed update of a tile array with them;
* ``TileIO`` (``io.py``): the periphery settings, packed for the ops and
  resolved for computation in one place;
* ``dispatch.py``: which implementation computes a call
  (``force_implementation("torch")`` forces the torch path).
"""

from fxanalog.ops import tile_record  # noqa: F401  (registers fxanalog::tile_record)
from fxanalog.ops import tile_mvm  # noqa: F401  (registers fxanalog::tile_mvm)
from fxanalog.ops import tile_update  # noqa: F401  (registers fxanalog::tile_update)
from fxanalog.ops.dispatch import force_implementation, forced_implementation, triton_available
from fxanalog.ops.io import TileIO

__all__ = ["TileIO", "force_implementation", "forced_implementation", "triton_available"]
