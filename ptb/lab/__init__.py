"""The lab: many volumes at once (``ptb status``, ``ptb find``, ``ptb watch``), through a local index."""
