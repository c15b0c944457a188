"""``python -m ptb`` is the ``ptb`` command."""
from .cli import main

main(prog_name="ptb")
