"""lab-llm: serve LLMs too big for one card on a few affordable GPUs."""

__version__ = "0.1.0"
