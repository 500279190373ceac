"""The exchange simulator's side of the wire: market data out over UDP, gaps re-sent over TCP."""
