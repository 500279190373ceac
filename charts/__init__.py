"""The drawing that ``fab bench``'s report (``ops.report``) and the service's local report
(``trading-service run --report``, ``trading-service report``) share: the figures' size, the
latency histogram, percentile and throughput charts, the number formats and the staging
directory that moves a report in only when it is whole.

It imports the standard library, numpy, matplotlib (inside the functions that draw, so
``fab --list`` and ``cdk synth`` never load it) and ``contracts``; nothing of the service, the
operator's side or the JIT.
"""
