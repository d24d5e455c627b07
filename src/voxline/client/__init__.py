"""A Python WHIP client (aiortc) used by `voxline call` and `voxline bench`."""
