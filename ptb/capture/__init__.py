"""Capture: what to record about a run: parameters, secrets, code environments (git, Docker, source), error texts."""
