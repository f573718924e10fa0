"""``python -m colearn`` (and ``accelerate launch -m colearn``) runs the colearn CLI."""
