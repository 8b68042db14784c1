"""Training scripts for the embedded digits models."""
