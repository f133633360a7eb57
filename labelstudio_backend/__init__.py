"""The Label Studio ML backend (setup, predict, webhooks, preference store).

Only the package exists so far; the backend itself is the subject of its own
issue and builds on `services.core.rankings` for ranking -> pair conversion.
"""
