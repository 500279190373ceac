"""The supervisor side: segments, stage state, model files, recordings, processes, logs.

It creates the shared memory the kernels run on, builds each stage's state from the config,
starts one pinned process per core, supervises them and drains them on stop.
"""
