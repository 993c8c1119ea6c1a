"""Several processes training or evaluating as one, through torch.distributed (started by torchrun).

A command run by `torchrun --nproc-per-node N -m gantools ...` (or `gantools train --nproc N`, which
starts exactly that through torch.distributed.run) finds RANK, WORLD_SIZE and LOCAL_RANK in its
environment and `join`s the process group they describe: NCCL on CUDA (rank r on cuda:LOCAL_RANK),
gloo on the CPU. Without them, or with one process, everything here is a no-op on `SINGLE`.

How training splits its work (gantools.train): every rank draws the global batch's data order and
G's inputs from the run's seeded generators exactly as one process would, and rank r keeps rows
r, r + W, r + 2W, ... (W processes). So the ranks see different data and latents, their union is the
single process's batch, and with gradients averaged over the ranks W processes at global batch B
train like one process at batch B (up to the order of float sums, and batch norm, which normalises
each rank's rows alone unless --sync-bn). The generators' states are the same on every rank: rank 0's
checkpoint resumes with any number of processes. The global torch RNG (e.g. dropout) is
seeded per rank (`rank_seed`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from gantools.errors import GantoolsError, Interrupted, UsageError, exit_now, first_line

# How long a collective may wait for the other ranks. Long, because the others wait at the next step
# while rank 0 writes a checkpoint or a sample grid; a rank that dies is noticed sooner: gloo's
# connections to it close, and torchrun stops the others when one of its processes exits.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one run: its rank of `world`, its local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    control: Any = None  # a gloo group for host-side flags and objects (None: the default group)

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and talks."""
        return self.rank == 0


SINGLE = Group()
_left: list[bool] = []  # `leave` done: the command ended in its group
_joined: list[Group] = []


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return world_size() > 1


def world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> Group:
    """The group `join` joined, or SINGLE."""
    return _joined[0] if _joined else SINGLE


def join() -> Group:
    """Join the process group torchrun describes (once; later calls return it): gloo for CPU tensors,
    and NCCL for CUDA tensors where CUDA is available (rank r on cuda:LOCAL_RANK). Ranks other than 0
    turn quiet (errors are still printed)."""
    if _joined or not launched():
        return current()
    import torch
    import torch.distributed as dist

    from gantools.log import set_verbosity

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=TIMEOUT) if cuda else None
    group = Group(rank, world, local_rank, control)
    _joined.append(group)
    atexit.register(_destroy)  # after an error; a command that succeeds calls `leave` first
    if rank:
        set_verbosity(quiet=True)
    return group


def leave() -> None:
    """A command's last word in its group: every rank waits for the others, then all tear the group
    down while they are still alive. Left to interpreter exit, gloo's teardown once aborted a rank whose
    peer had already gone ("terminate called without an active exception"). No-op without a group."""
    if not _joined:
        return
    barrier()
    _destroy()
    _left.append(True)


def exit_after_leaving(code: int) -> None:
    """End a rank that has left its group with `code` without the interpreter's teardown: even after both
    ranks destroyed the group, a rank aborted there in 2 of 8 runs on a loaded 2-core CPU (torch 2.14.1:
    "terminate called without an active exception", exit -6, so torchrun failed a finished run).
    Returns (and the interpreter exits as usual) when this process never joined a group."""
    if not _left:
        return
    exit_now(code)


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _joined.clear()


def local_device(device):
    """The torch device of this rank: cuda:LOCAL_RANK for CUDA in a group, else `device` itself."""
    import torch

    group = current()
    if group.world == 1 or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"--device {device}: several processes run on CUDA (NCCL) or the CPU (gloo), not {device.type}")
    if device.index not in (None, group.local_rank):
        raise UsageError(f"--device {device}: with several processes rank r takes cuda:LOCAL_RANK; give --device cuda")
    return torch.device("cuda", group.local_rank)


@contextlib.contextmanager
def _peers() -> Iterator[None]:
    """A failed collective means another rank died or stopped: one line, exit 1."""
    try:
        yield
    except RuntimeError as e:
        first = first_line(e)
        raise GantoolsError(f"rank {current().rank}: lost the other processes of this run (one died or "
                            f"stopped): {first}") from None


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank `rank`'s global torch RNG at `step`: `seed` itself for rank 0 of a fresh run
    (as one process), else a 63-bit number mixed from all three."""
    if rank == 0 and step == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, step]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def rows(t, dim: int = 0):
    """This rank's rows of a global batch along `dim`: r, r + W, ... (all of it in one process)."""
    group = current()
    if group.world == 1:
        return t
    return t[(slice(None),) * dim + (slice(group.rank, None, group.world),)]


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (every rank must call it at the same point)."""
    group = current()
    if group.world == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)])
    with _peers():
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group.control)
    return bool(t.item())


def mean(t):
    """The mean of `t` over the ranks (in place; `t` itself in one process)."""
    if current().world > 1:
        import torch.distributed as dist

        with _peers():
            dist.all_reduce(t)
        t.div_(current().world)
    return t


def average_gradients(params: Iterable) -> None:
    """Replace each parameter's gradient by its mean over the ranks, in one flat all-reduce.

    Why not DistributedDataParallel: objectives call D several times per backward pass, run D forward
    for G's loss whose backward stops at G's weights, and a phase may use a network it does not
    train. DDP's reducer expects every forward pass with gradients to end in a backward pass that
    reaches all its parameters (else find_unused_parameters, a graph walk per forward, and no_sync
    around the passes that are not its own), which the trainer cannot know without knowing the
    model. Averaging after each backward pass is exact and the same for every objective; the price
    is that communication does not overlap the backward pass: DDP's overlap made a D step of dcgan
    ~10% faster in 2 CPU processes (bench/distributed.py --ddp; bench/RESULTS.md, distributed; not
    measured on GPUs). Every rank runs the same code, so the parameters that have a gradient are the
    same on all ranks.
    """
    group = current()
    if group.world == 1:
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    with _peers():
        dist.all_reduce(flat)
    flat.div_(group.world)
    for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(avg)


def broadcast_modules(modules: Iterable) -> None:
    """Rank 0's parameters and buffers into every rank's copies of `modules` (same starting point)."""
    if current().world == 1:
        return
    import torch.distributed as dist

    with _peers():
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)


def barrier() -> None:
    if current().world > 1:
        import torch.distributed as dist

        with _peers():
            dist.barrier(group=current().control)


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 alone and return its result on every rank; a GantoolsError it raises is
    raised on every rank (so all exit with its code), e.g. claiming the run folder."""
    group = current()
    if group.world == 1:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if group.main:
        try:
            box[0] = ("ok", fn())
        except GantoolsError as e:
            box[0] = ("error", type(e).__name__, str(e))
            with _peers():
                dist.broadcast_object_list(box, 0, group=group.control)
            raise
    with _peers():
        dist.broadcast_object_list(box, 0, group=group.control)
    if box[0][0] == "error":
        kinds = {cls.__name__: cls for cls in (GantoolsError, UsageError, Interrupted)}
        raise kinds.get(box[0][1], GantoolsError)(box[0][2])
    return box[0][1]


# ---------------------------------------------------------------------------- evaluation


def extract(extractor, batches: Iterable, source: str, total: int, class_names=None, logits: bool = True):
    """Inception features of all images in `batches` with every rank: the stream is cut into the
    extractor's batches as one process cuts it, rank r extracts batches r, r + W, ..., and rank 0
    gathers them back in order, so its FeatureSet equals one process's (same batches, same
    arithmetic). Other ranks return None. Every rank reads (or generates) the whole stream: it skips
    the others' batches before the Inception pass, which is where the time goes."""
    group = current()
    if group.world == 1:
        return extractor.run(batches, source, total, class_names=class_names, logits=logits)
    import numpy as np
    import torch.distributed as dist

    from gantools.metrics.features import FeatureSet, _rechunk

    mine = [(i, x, y) for i, (x, y) in enumerate(_rechunk(batches, extractor.batch_size)) if i % group.world == group.rank]
    part = None
    if mine:
        share = sum(len(x) for _, x, _ in mine)
        fs = extractor.run(((x, y) for _, x, y in mine), source, share, class_names=class_names, logits=logits)
        sizes = [len(x) for _, x, _ in mine]
        part = (sizes, fs.features, fs.logits, fs.labels)
    parts: list = [None] * group.world if group.main else None
    with _peers():
        dist.gather_object(part, parts, dst=0, group=group.control)
    if not group.main:
        return None
    pieces = []  # (batch index, features, logits, labels) of every batch of every rank
    for rank, got in enumerate(parts):
        if got is None:
            continue
        sizes, feats, lgts, labels = got
        ends = np.cumsum(sizes)
        for j, (a, b) in enumerate(zip(ends - sizes, ends)):
            pieces.append((rank + j * group.world, feats[a:b], None if lgts is None else lgts[a:b],
                           None if labels is None else labels[a:b]))
    if not pieces:
        raise GantoolsError(f"{source}: no images to evaluate")
    pieces.sort(key=lambda p: p[0])
    labelled = all(p[3] is not None for p in pieces)
    return FeatureSet(source=source, count=sum(len(p[1]) for p in pieces),
                      features=np.concatenate([p[1] for p in pieces]),
                      logits=np.concatenate([p[2] for p in pieces]) if pieces[0][2] is not None else None,
                      labels=np.concatenate([p[3] for p in pieces]) if labelled else None,
                      class_names=list(class_names or []), network=extractor.network_id,
                      preprocessing=extractor.preprocessing_id)


# ---------------------------------------------------------------------------- launching


def launch(nproc: int, argv: list[str]) -> int:
    """`gantools ARGV` in `nproc` processes on this machine through torch.distributed.run
    (torchrun --standalone: a free port, one machine); returns the exit code for this process: 0,
    130 when the processes were interrupted, 2 when they refused the usage, else 1. Each thread
    count defaults to this machine's cores over `nproc` (torchrun's default is 1). torchrun's own log
    lines (workers started and stopped) show with -v."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from gantools.log import verbosity

    if verbosity() <= 0:
        for name in [*logging.root.manager.loggerDict, "torch.distributed.elastic"]:
            if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
                logging.getLogger(name).setLevel(logging.CRITICAL)

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "gantools", *argv]))
    except ChildFailedError as e:
        codes = {f.exitcode for f in e.failures.values()}
        if codes <= {130, -2, -15}:  # stopped by Ctrl-C/SIGTERM (each printed its line)
            return 130
        return 2 if 2 in codes else 1
    except SignalException:
        return 130
    return 0
