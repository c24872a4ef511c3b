"""GGUF headers (local file or HTTP range), shard sets, merge, split and blob writing; never holds tensor data in memory."""
