"""Pictures: the DET curve and score distributions of `audio eval`, the map of a store's
voices, the diarization timeline. One stage shared by all of them: each module computes what
it draws as plain data (tests read it back), then draws it with matplotlib, an optional
dependency imported only here and only when a picture is asked for (figure.py)."""
