"""Who spoke when: speaker turns, their files (RTTM, UEM), scoring and the diarization pipeline."""
