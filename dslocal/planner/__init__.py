"""The memory model, fit and offload, speed estimates, ranking and multi-node plans; pure functions, no I/O."""
