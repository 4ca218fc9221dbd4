"""The package version, in a module of its own so that any layer can record it without importing the package root
(whose lazy names point at the models and the evaluation stack)."""

__version__ = "0.1.0"
