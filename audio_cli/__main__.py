"""`python -m audio_cli` runs the `audio` command."""

from audio_cli.cli.main import main

main()
