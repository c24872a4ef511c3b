"""The Ollama daemon's lifecycle, the API client, Modelfile rendering and model creation."""
