"""The Ollama contract suite (see conftest.py)."""
