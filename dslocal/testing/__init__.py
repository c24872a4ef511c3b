"""Helpers for tests and benchmarks: real GGUF models generated with the gguf package."""
