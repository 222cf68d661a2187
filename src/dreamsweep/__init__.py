"""DreamSweep: measured hyperparameter experiments for DreamBooth fine-tuning."""

from pathlib import Path

# The folder of everything the package ships besides code (models, images, the tokenizer).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
