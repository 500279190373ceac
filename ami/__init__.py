"""lowlat host tuning as code: render, apply and check what makes a host a low-latency host."""
