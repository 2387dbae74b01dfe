"""bench: command-line programs (absl)."""
