"""``trading-service bench`` and the hiccup probe: figures measured side by side in one run.

The two-process harness, the measures (floor, rings, multiprocessing.Queue, kernels), the
pipeline end to end, HTTP load, the C++ baseline ring, and the tables and ratios they print.
"""
