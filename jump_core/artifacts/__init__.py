"""What the project writes to disk: checkpoints, the versioned model directory, atomic writes, fingerprints."""
