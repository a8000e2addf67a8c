"""The Dify-faithful stack of the lab: Dify's real compose files with small stand-in images (see `releases.py`)."""
