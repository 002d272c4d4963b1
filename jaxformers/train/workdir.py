"""One run per workdir: an exclusive `fcntl.flock` on `<workdir>/lock` for the run's lifetime.

The kernel drops a flock when its process dies, however it dies (SIGKILL included), so a killed
run never leaves the workdir stuck; a second run on a live run's workdir refuses in one line naming
the holder's pid. Only process 0 locks (in a multi-host run every process shares the workdir), and
only local paths can be locked (a `gs://` workdir is not).
"""

import contextlib
import fcntl
import os

import jax

from jaxformers.errors import UserError

LOCK_FILE = "lock"


class WorkdirError(UserError):
    """A workdir that cannot be used: not a directory, or in use by another live run."""


def prepare(workdir: str) -> None:
    """Create `workdir` (and parents), or say in one line why it cannot be one."""
    workdir = str(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir={workdir} exists and is not a directory; pick another path")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"--workdir={workdir} cannot be created: {e.strerror}") from e


@contextlib.contextmanager
def locked(workdir: str):
    """Hold the workdir's lock while the block runs; WorkdirError if another process holds it."""
    workdir = str(workdir)
    if "://" in workdir or jax.process_index() != 0:
        yield
        return
    prepare(workdir)
    path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkdirError(
            f"--workdir={workdir} is in use by another run (pid {holder}, holding {path}); wait for it "
            "to finish or pick another --workdir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
