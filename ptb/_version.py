"""ptb's version, in a module of its own: any layer can name it without importing the package root."""

__version__ = "0.2.0"
