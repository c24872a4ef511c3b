"""The packaged model catalog (DeepSeek variants) and lookups by id and alias."""
