"""``python -m llmkt ...`` (and ``torchrun ... -m llmkt train CONFIG``) runs the command line."""

from llmkt.cli import main

if __name__ == "__main__":
    main(prog_name="llmkt")
