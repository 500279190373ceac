"""The read side: a read-only view of a running engine and what is made from it.

The engine view (follows the engine across restarts), the Prometheus exposition, the FastAPI
telemetry API, ``trading-service top`` and the run report. Reading never stalls a stage: every
reading is a lock-free copy of the stats block.
"""
