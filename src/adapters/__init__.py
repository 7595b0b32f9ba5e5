"""Adapters: one package per technology, each implementing ports of `concert_domain`."""
