"""Facts that several parts of lowlat share, in one place each: the bottom layer.

Records, histogram buckets, the stats layout and metric names, segment and cache-line
constants, exit codes, the tuning profile, the alarm catalog, the release layout, the SLO
defaults and how lowlat writes its documents. Standard library and numpy only, and nothing else
of ours (``lint-imports`` checks it): the CDK app, the Fabric tasks and the numba kernels all
read the same facts without loading each other.
"""
