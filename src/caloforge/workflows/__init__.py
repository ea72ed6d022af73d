"""End-to-end workflows that chain the library's stages (data -> train -> sample -> evaluate)."""
