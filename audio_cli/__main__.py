"""`python -m audio_cli` runs the `audio` command."""

from .cli import main

main()
