"""numba's ``njit`` as drope uses it (metric and simulator kernels): cached on disk, or compiled
per process where no cache fits.

Compiled code is cached next to the module or, where that is read-only, in numba's user cache
(``NUMBA_CACHE_DIR`` overrides); where no cache location works the functions compile in each
process instead of failing.
"""
from __future__ import annotations

from numba import njit

from drope.geometry import wrap_angle


def jit(fn):
    """``njit(cache=True, nogil=True)``, or uncached where numba finds no writable cache location."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)


wrap = jit(wrap_angle)  # drope.geometry's one definition, compiled for scalars inside kernels
