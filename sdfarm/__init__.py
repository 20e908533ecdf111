"""sdfarm: a job-queue render farm for Stable Diffusion."""

__version__ = "0.1.0"
