"""Training: optimizers and learning-rate schedules (the trainer itself is still to come)."""
