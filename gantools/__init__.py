"""gantools: single-purpose GAN utilities on PyTorch.

Importing this package is cheap (no torch); the heavy modules are
imported by the commands that need them.
"""

__version__ = "0.1.0"
