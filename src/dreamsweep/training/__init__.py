"""The DreamBooth training step and what it needs: loss, optimiser, EMA, checkpoints."""
