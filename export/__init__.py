"""export: command-line programs (absl)."""
