"""Scores of generated samples: pure functions over embeddings, feature models passed in."""
