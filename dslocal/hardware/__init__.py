"""Hardware detection: one probe per vendor tool, each a pure parse_*(text) plus a thin runner with a timeout."""
