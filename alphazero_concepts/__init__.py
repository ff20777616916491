"""alphazero-concepts: find what a self-play chess network knows that people do not, and teach it."""

__version__ = "0.1.0"
