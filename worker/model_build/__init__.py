"""Builders for the small Stable Diffusion models that sdfarm makes itself (no hub downloads)."""
