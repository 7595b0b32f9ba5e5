"""Entrypoints: what a user starts, and the one module (`wiring`) that builds adapters."""
