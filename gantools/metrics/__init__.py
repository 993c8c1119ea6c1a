"""Evaluation metrics over Inception features: FID, IS, KID, precision/recall (`gantools evaluate`).

Modules, one concern each:
  inception        the networks (pool3 trunk for FID/KID/PR, full weights for IS)
  resize           the reference preprocessing (TF1 bilinear to 299, (x-128)/128)
  features         batched extraction from uint8 NCHW batches
  stats            float64 mean/covariance and the --save-stats file
  fid, kid, precision_recall, inception_score   the metrics; each registers in
                   gantools.registry.METRICS

Importing this package registers the metrics; torch is imported by the metric
modules only when they compute.
"""

from gantools.metrics import fid, inception_score, kid, precision_recall  # noqa: F401  (registration)

# What each metric consumes: "stats" (FID: features or a statistics file),
# "features" (pool3 of both sides), "logits" (the fake side's IS logits only).
NEEDS = {"fid": "stats", "kid": "features", "pr": "features", "is": "logits"}


def needs(name: str) -> str:
    return NEEDS.get(name, "features")
