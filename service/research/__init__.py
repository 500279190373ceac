"""The research path: real market data in (LOBSTER), books rebuilt from it."""
