import importlib.util
import json
import os
import subprocess
import sys

SCRIPT = """
import glob, json, os, sys
from jaxformers.train.metrics import MetricsWriter
writer = MetricsWriter(sys.argv[1], total_steps=2, initial_step=0, progress_bar=False)
writer.write(1, "train", {"loss": 2.5})
writer.close()
events = glob.glob(os.path.join(sys.argv[1], "tensorboard", "events.out.tfevents.*"))
print(json.dumps({"torch_imported": "torch" in sys.modules, "event_bytes": os.path.getsize(events[0])}))
if sys.argv[2] == "1":
    import torch  # still importable after the writer blocked it during its own import
    print(torch.__name__)
"""


def test_metrics_go_to_jsonl_and_tensorboard_without_importing_torch(tmp_path):
    has_torch = importlib.util.find_spec("torch") is not None
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(int(has_torch))],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.splitlines()[0])
    assert not report["torch_imported"] and report["event_bytes"] > 0
    if has_torch:
        assert run.stdout.splitlines()[1] == "torch"
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["step"] == 1 and record["split"] == "train" and record["loss"] == 2.5
