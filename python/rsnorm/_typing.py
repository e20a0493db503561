"""Type aliases of the public signatures (runtime-evaluated, so written for Python 3.10)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

#: An output array (its dtype is the input's: float16, float32 or float64).
Array = npt.NDArray[Any]
if TYPE_CHECKING:
    from .gpu import Array as _DeviceArray

    #: Anything ``np.asarray`` takes without computing, or an array of a registered backend.
    # Union, not `|`: mypy reads an alias bound in both branches as one only in this spelling.
    ArrayLike = Union[npt.ArrayLike, _DeviceArray]  # noqa: UP007
    #: An array an op writes into (``out=``, running statistics): a NumPy or a device array.
    OutArray = Union[npt.NDArray[Any], _DeviceArray]  # noqa: UP007
else:
    ArrayLike = npt.ArrayLike
    OutArray = npt.NDArray[Any]
#: ``out=`` of a function returning several arrays: one entry per result, an array or None (as NumPy's
#: ufuncs with several outputs take it).
OutArrays = tuple[OutArray | None, ...]
#: The trailing dims a row normalization covers: a size, sizes, or None for the last dim.
Shape = int | Sequence[int] | None
#: Partial statistics (count, mean, m2), as ``moments`` returns and ``merge_moments`` takes.
Moments = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
