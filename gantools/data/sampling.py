"""Orders in which the trainer visits a data set's rows."""

from __future__ import annotations

import torch


def class_balanced_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One epoch's row indices (as many as there are rows) with every class equally often.

    Each class present gets len(labels) // K places (the remainder goes to classes chosen at random); a
    class fills its places with shuffled passes over its own rows, so a rare class's images repeat
    evenly and a common class's are each seen at most once. The places are then shuffled together."""
    labels = labels.cpu().long()
    classes = torch.unique(labels)
    k = len(classes)
    share = torch.full((k,), len(labels) // k, dtype=torch.long)
    share[torch.randperm(k, generator=generator)[:len(labels) % k]] += 1
    parts = []
    for c, n in zip(classes.tolist(), share.tolist()):
        rows = torch.nonzero(labels == c).flatten()
        passes = -(-n // len(rows))
        parts.append(torch.cat([rows[torch.randperm(len(rows), generator=generator)] for _ in range(passes)])[:n])
    order = torch.cat(parts)
    return order[torch.randperm(len(order), generator=generator)]
