"""Data sources, the image stream and image writers.

`open_source(spec)` is the one entry point for every command that reads data.
"""

from gantools.data.sources import ImageSet, VectorSet, open_source

__all__ = ["ImageSet", "VectorSet", "open_source"]
