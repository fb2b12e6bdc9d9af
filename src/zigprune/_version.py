"""The package version, in one place (read by the plan, the run metrics and the bench report)."""

__version__ = "0.1.0"
