"""The engine interface and its implementations: Ollama, embedded llama.cpp, OpenAI-compatible servers."""
