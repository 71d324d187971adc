"""IPython integration (placeholder until the magics land)."""
