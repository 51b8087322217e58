"""The exceptions resformer raises. Each carries the engine's one-line message, and each
pickles (so it crosses process boundaries, e.g. from a Ray actor)."""


class ResformerError(Exception):
    """Base of every error the engine raises."""


class ShapeError(ResformerError, ValueError):
    """A wrong shape, dtype or argument value."""


class ModelLoadError(ResformerError, OSError):
    """A model or weights file that cannot be read or does not hold what it should."""

    def __init__(self, *args):
        # OSError's constructor reinterprets 2-5 args; keep ours as a plain message
        super().__init__(*args)

    def __str__(self):
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return (type(self), self.args)


class DeviceError(ResformerError, RuntimeError):
    """No adapter, a lost device, out of device memory, or a device used across a fork."""


__all__ = ["ResformerError", "ShapeError", "ModelLoadError", "DeviceError"]
