"""Chat sessions, the reasoning (<think>) parser and the history store."""
