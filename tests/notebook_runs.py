"""Runs the colabs/ notebooks in the background from the start of the test session.

Each notebook executes in its own process and Jupyter kernel. In-process tests keep about one of
this machine's two cores busy, so the notebooks run, one at a time and at a lower priority, on the
other core while those tests run; when the notebook tests themselves come up, a second one may run
beside the first. A notebook test then only waits for its own run and checks the result.
"""

import os
import signal
import subprocess
import sys
import threading

RUNNER = (  # lowers its own priority first: the kernel it starts inherits it
    "import os, sys, nbformat; os.nice(int(sys.argv[3])); "
    "from nbclient import NotebookClient; "
    "nb = nbformat.read(sys.argv[1], as_version=4); "
    "NotebookClient(nb, timeout=600, kernel_name='python3', "
    "resources={'metadata': {'path': sys.argv[2]}}).execute()"
)
BACKGROUND_NICENESS = 5


class NotebookRuns:
    def __init__(self):
        self._slots = threading.Semaphore(1)
        self._done: dict[str, threading.Event] = {}
        self._results: dict[str, tuple[int, str]] = {}
        self._widened = False
        self._stopped = False
        self._procs: list[subprocess.Popen] = []

    def start(self, paths):
        """Queue each notebook once; they run in order, `self._slots` at a time."""
        for path in paths:
            if path not in self._done:
                self._done[path] = threading.Event()
                threading.Thread(target=self._run, args=(path,), daemon=True).start()

    def result(self, path, timeout=900) -> tuple[int, str]:
        """(return code, output) of `path`'s run, started now if it was not queued."""
        if not self._widened:  # the suite has reached the notebooks: nothing else competes now
            self._widened = True
            self._slots.release()
        self.start([path])
        if not self._done[path].wait(timeout):
            raise TimeoutError(f"{os.path.basename(path)} did not finish in {timeout} s")
        return self._results[path]

    def stop(self):
        """Kill the runs still going (a session stopped early, e.g. by -x or Ctrl-C)."""
        self._stopped = True
        for proc in list(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    def _run(self, path):
        env = dict(
            os.environ, JAXFORMERS_COLAB_SMALL="1", XLA_FLAGS=os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", "")
        )  # one CPU device
        with self._slots:
            try:
                if self._stopped:
                    raise RuntimeError("the test session ended before this notebook ran")
                command = [
                    sys.executable,
                    "-c",
                    RUNNER,
                    path,
                    os.path.dirname(path),
                    str(BACKGROUND_NICENESS),
                ]
                proc = subprocess.Popen(  # its own process group: stop() reaches the kernel too
                    command,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
                self._procs.append(proc)
                output, _ = proc.communicate(timeout=900)
                self._results[path] = (proc.returncode, output)
            except Exception as e:  # noqa: BLE001  (reported by the notebook's test)
                self._results[path] = (-1, f"{type(e).__name__}: {e}")
            finally:
                self._done[path].set()


RUNS = NotebookRuns()
