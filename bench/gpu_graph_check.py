"""GPU check: a CUDA-graph run follows the eager run's trajectory from the same seed.

Runs eager twice (a control: how far two eager runs drift apart through cuDNN's
run-to-run rounding), with deterministic algorithms on and off, and the graph
run, and prints the largest relative G-weight difference to the first eager run
at several step counts.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gantools.train import TrainConfig, Trainer  # noqa: E402

data = sys.argv[1]
checkpoints = (1, 3, 4, 5, 10, 30)


def run(graphs: bool, deterministic: bool):
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    tr = Trainer(TrainConfig(model="dcgan", data=data, batch_size=64, device="cuda", steps=30, amp=False,
                             cuda_graphs=graphs, sample_every=0, out="/tmp/graph-check"))
    batches = tr.batch_source()
    snaps = {}
    while tr.step < 30:
        tr.train_step(batches)
        if tr.step in checkpoints:
            torch.cuda.synchronize()
            snaps[tr.step] = [p.detach().float().cpu().clone() for p in tr.nets["G"].parameters()]
    return snaps


def diff(a, b):
    return {s: max(((x - y).norm() / y.norm().clamp_min(1e-12)).item() for x, y in zip(a[s], b[s]))
            for s in a if s in b}


base = run(False, True)
for name, graphs, det in (("eager again (deterministic)", False, True), ("eager (cudnn default)", False, False),
                          ("graphs (deterministic)", True, True)):
    d = diff(run(graphs, det), base)
    print(f"{name:<30}", "  ".join(f"step {s}: {v:.1e}" for s, v in sorted(d.items())))
