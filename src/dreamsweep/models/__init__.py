"""Stable Diffusion model building blocks: the embedded tiny model and pipeline assembly."""
