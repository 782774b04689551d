"""Toy-faces world: procedural faces with ground-truth attributes, regions and captions."""
