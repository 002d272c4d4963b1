"""Runs the colabs/ notebooks in the background from the start of the test session.

Each notebook executes in its own process and Jupyter kernel. In-process tests keep about one of
this machine's two cores busy, so the notebooks run, one at a time and at a lower priority, on the
other core while those tests run; when the notebook tests themselves come up, a second one may run
beside the first. A notebook test then only waits for its own run and checks the result.
"""

import os
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

    def _run(self, path):
        env = dict(
            os.environ, JAXFORMERS_COLAB_SMALL="1", XLA_FLAGS=os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", "")
        )  # one CPU device
        with self._slots:
            try:
                command = [
                    sys.executable,
                    "-c",
                    RUNNER,
                    path,
                    os.path.dirname(path),
                    str(BACKGROUND_NICENESS),
                ]
                run = subprocess.run(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900
                )
                self._results[path] = (run.returncode, run.stdout)
            except Exception as e:  # noqa: BLE001  (reported by the notebook's test)
                self._results[path] = (-1, f"{type(e).__name__}: {e}")
            finally:
                self._done[path].set()


RUNS = NotebookRuns()
