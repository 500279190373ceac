"""lowlat's trading service: numba kernels over shared-memory rings, and the glue that runs them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lowlat")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
