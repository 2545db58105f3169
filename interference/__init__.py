"""reefd.interference: the learned interference model (arrives with its issue)."""
