"""Model definitions. Every module in this package is imported here, and registers itself
into `gantools.registry.MODELS`; adding a model is adding one file (plus its test).
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
