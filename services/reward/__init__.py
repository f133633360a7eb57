"""The reward service: score text with the active reward model, train new versions from rankings."""
