"""Garment design from a semantic layout (issue 16): layouts and their palette (layout.py), the diffusion route
through a segmentation ControlNet (diffusion.py), the native SMIS/SPADE-family generator and its trainer (smis/)."""
