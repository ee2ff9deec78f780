"""The engine: the Accelerate training loop, checkpoints, teacher sources and the run pipeline."""
