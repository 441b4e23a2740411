"""``python -m llmkt.cli``."""

from llmkt.cli import main

main()
