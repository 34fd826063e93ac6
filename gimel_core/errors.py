"""The few exceptions Gimel raises across module boundaries."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidEvent(ValueError):
    """Client input that Gimel refuses; answered with HTTP 400 and nothing written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class StoreUnavailable(RuntimeError):
    """Redis could not be reached or did not answer in time; answered with HTTP 503."""


class UnknownExperiment(LookupError):
    """The experiment has no data in that namespace; answered with HTTP 404."""
