"""Array type aliases for annotations, defined once for the whole package.

Names follow numpy's dtypes: ``F32`` is an array of float32, ``Bool`` of bool.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["F32", "F64", "I8", "I32", "I64", "Bool"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
