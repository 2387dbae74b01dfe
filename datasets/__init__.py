"""datasets: command-line programs (absl)."""
