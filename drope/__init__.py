"""drope: multi-agent trajectory prediction with Directional Rotary Position Embedding."""
__version__ = "0.1.0"
