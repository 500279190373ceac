"""The hot path: numba kernels only, all compiled with one setting (``service.kernels.jit``).

Atomics and the clock, the shared-memory ring, the seqlock and histograms over the stats block,
the control words, the market-data simulator, the book, features/model/strategy, risk, the
three stages and their loop, and the probes the benchmark times. Nothing here opens a file,
starts a process or allocates on the hot path; kernels import only numpy, numba, ``contracts``
and each other (``lint-imports`` checks it). The same kernels run live and in every replay.
"""
