"""Imputing tables with GAIN (Yoon et al., ICML 2018): `gantools impute`.

Modules: `table` (reading and writing CSV/TSV/.npy/.npz/.h5, missing markers), `schema` (column
kinds, min-max and one-hot encoding, decoding), `params` (hyper-parameters, variants), `gain`
(the networks and the training loop), `imputer` (fit, fill, save/load as a 'gain' checkpoint),
`evaluate` (RMSE on hidden cells).
Importing this package does not import torch.
"""

from gantools.impute.evaluate import evaluate, hide_mcar
from gantools.impute.imputer import Imputer, fit_imputer
from gantools.impute.schema import Column, fit_columns, infer_kinds
from gantools.impute.table import DEFAULT_MISSING, Table, parse_missing_values, read_table, write_table

__all__ = ["DEFAULT_MISSING", "Column", "Imputer", "Table", "evaluate", "fit_columns", "fit_imputer",
           "hide_mcar", "infer_kinds", "parse_missing_values", "read_table", "write_table"]
