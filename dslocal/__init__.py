"""dslocal: DeepSeek (R1, R1-0528, V3 and the R1 distills) on your own machine through Ollama."""

__version__ = "0.1.0"
