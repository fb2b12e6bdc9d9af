"""Documented import path kept: pickle-free checkpoints live at ``zigprune.training.checkpoint``."""

from .training.checkpoint import Checkpointer, CheckpointError, load, save

__all__ = ["CheckpointError", "Checkpointer", "load", "save"]
