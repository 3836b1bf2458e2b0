"""The one user-facing error of HMC visualization (shared by every module of gencaffe.hmc)."""


class NetSetupError(ValueError):
    """A user-facing problem with the model, weights, node or input size: a clear
    message, never an abort of the process."""


class SizeRejected(Exception):
    """Caffe refused to shape the net at an input size; ``reason`` is Caffe's own
    message (its failed CHECK), ``layer`` the layer it was setting up, if known."""

    def __init__(self, reason: str, layer: "str | None" = None):
        super().__init__(reason)
        self.reason = reason
        self.layer = layer

    def describe(self) -> str:
        return f"at layer '{self.layer}': {self.reason}" if self.layer else self.reason
