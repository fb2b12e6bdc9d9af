"""Errors zigprune raises: each says what went wrong and what to try."""


class ZigpruneError(Exception):
    """Base class of every zigprune error."""


class TraceError(ZigpruneError):
    """The model could not be traced with ``torch.export`` on the example inputs."""


class ExampleInputError(ZigpruneError, ValueError):
    """The example inputs are not something the model can run on."""


class ConstructionError(ZigpruneError):
    """The slim model did not reproduce the zero-group full model's outputs."""
