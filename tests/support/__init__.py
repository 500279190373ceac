"""Test helpers: loopback servers, reference implementations, synthesized apps, linters."""
