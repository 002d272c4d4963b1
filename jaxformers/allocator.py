"""Keep XLA:CPU's per-step temp buffer in the malloc heap instead of a fresh mmap every step.

XLA:CPU allocates one temp buffer per execution of a compiled step (the activations saved for the
backward pass and every intermediate: hundreds of MB for the README's main job) and frees it when
the step ends. glibc serves a request above its mmap threshold with a fresh `mmap` and unmaps it on
`free`, so every step touches the whole buffer again as new pages: one minor page fault per 4 KiB
page (about 42k faults per step, and a third of the job's CPU time in the kernel, were measured on
`launch/train.py`). Three glibc `mallopt` settings (glibc manual, "Malloc Tunable Parameters") keep
the buffer in the heap, where the next step reuses the same, already mapped pages:

- M_ARENA_MAX = 1: every thread allocates from the main (sbrk) arena, which can hold a buffer of
  any size; a secondary arena would have to mmap it;
- M_MMAP_MAX = 0: never serve a request with its own mmap;
- M_TRIM_THRESHOLD = 2**31 - 1: never give the freed top of the heap back to the kernel.

Cost: the heap keeps its high-water mark (about the largest step's temp buffer plus the arrays
alive around it) for the life of the process.

`keep_temp_buffers_in_heap()` must run before the CPU backend starts its threads (the first JAX
computation): the training entry points (`launch/train.py`, the benchmarks) call it first thing.
It is never run on import. Without glibc (macOS, Windows, musl) it does nothing and returns False.
"""

import ctypes
import ctypes.util
import functools
import platform

# <malloc.h> parameter numbers (glibc).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def _glibc():
    """The process's glibc, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return libc


@functools.cache
def keep_temp_buffers_in_heap() -> bool:
    """Apply the three mallopt settings above once per process; True if glibc accepted them all."""
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
