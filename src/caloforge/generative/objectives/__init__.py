"""generative/objectives."""
