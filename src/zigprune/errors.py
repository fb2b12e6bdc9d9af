"""Errors zigprune raises: each says what went wrong and what to try."""


class ZigpruneError(Exception):
    """Base class of every zigprune error."""


class UnknownNameError(ZigpruneError, KeyError, ValueError):
    """A name no registry has (a model, method, optimizer, criterion ...); the message lists the valid
    names. A KeyError and a ValueError too, for code that caught either before registries shared it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TraceError(ZigpruneError):
    """The model could not be traced with ``torch.export`` on the example inputs."""


class ExampleInputError(ZigpruneError, ValueError):
    """The example inputs are not something the model can run on."""


class ConstructionError(ZigpruneError):
    """The slim model did not reproduce the zero-group full model's outputs."""


class DataError(ZigpruneError):
    """A dataset is missing, malformed or unknown; the message says how to get it."""


class LoadError(ZigpruneError):
    """A saved run (``plan.json``, ``model.safetensors``) is missing, corrupt or does not match."""


class ModelError(ZigpruneError):
    """A model spec cannot be resolved or built, or a model is not the one it should be."""


class MetaDeviceError(ZigpruneError, ValueError):
    """A step that needs weight values (a check, a norm, calibration) was asked of a meta-device model."""


class ExportError(ZigpruneError):
    """An ONNX export failed, or ONNX Runtime does not reproduce the PyTorch outputs."""


class TargetError(ZigpruneError, ValueError):
    """A target that is not a share in (0, 1) or a reduction factor above 1."""


class OptimizerError(ZigpruneError, ValueError):
    """An unknown optimizer name, or options that do not fit the optimizer (a target for HSPG)."""


class PolicyError(ZigpruneError, ValueError):
    """A compression policy that is not one, is malformed, or was searched on another model."""


class ConfigError(ZigpruneError, ValueError):
    """A compress setting out of range (epochs, batch size, learning rate ...); the message names the flag."""


class RunDirError(ZigpruneError):
    """The run directory holds a run that would be overwritten, or no run to resume."""


class Interrupted(ZigpruneError):
    """A run stopped on Ctrl-C or SIGTERM; the message says how to resume, ``signal`` which one it was
    ("SIGINT" or "SIGTERM": the CLI exits with 130 or 143)."""

    def __init__(self, message: str, *, signal: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal = signal


class ResumeError(ZigpruneError, ValueError):
    """A saved training state does not fit the run resumed from it (another seed, model or optimizer)."""


class DivergedError(ZigpruneError, FloatingPointError):
    """Training diverged: the loss became NaN or infinite at ``step`` (1-based); lower the learning rate."""

    def __init__(self, message: str, *, step: int, loss: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss


def first_line(err: BaseException) -> str:
    """The first line of an error's text (or its type name): enough for a one-line message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class CalibrationError(ZigpruneError, ValueError):
    """Calibration data for post-training pruning is empty, does not run, or gives non-finite activations."""


class QuantizeError(ZigpruneError):
    """Int8 quantization or weight sharing cannot run as asked (missing onnxruntime, a corrupt ONNX file,
    empty or ill-fitting calibration data, a bad number of bits)."""
