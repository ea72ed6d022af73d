"""generative/samplers."""
