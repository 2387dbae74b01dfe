"""training: command-line programs (absl)."""
