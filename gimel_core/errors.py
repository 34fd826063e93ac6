"""The few exceptions Gimel raises across module boundaries."""


class GimelError(Exception):
    """Something the user can fix, said in one line (the CLI prints it without a traceback)."""


class ConfigError(GimelError, ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidInput(GimelError, ValueError):
    """Client input that Gimel refuses; answered with HTTP 400 and nothing written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidFields(InvalidInput):
    """Several inputs are invalid (a plan's fields): all are reported at once, the first as
    ``field``, so a client fixes them in one go."""

    def __init__(self, errors: list[InvalidInput]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more: see errors)" if len(errors) > 1 else ""
        super().__init__(first.field, first.message + more)
        self.errors = errors


class InvalidBatch(InvalidInput):
    """Some events of a batch are invalid; none of the batch is recorded."""

    def __init__(self, errors: list[dict[str, object]], total: int) -> None:
        super().__init__("events", f"{len(errors)} of {total} events are invalid; none recorded")
        self.errors = errors


class Refused(GimelError):
    """A valid event Gimel will not count: past a cap, or outside the allowlists (422)."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


class Conflict(GimelError):
    """A request that contradicts what is stored (HTTP 409); nothing written."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class StoreUnavailable(GimelError, RuntimeError):
    """Redis could not be reached or did not answer in time; answered with HTTP 503."""


class UnknownExperiment(GimelError, LookupError):
    """The experiment has no data in that namespace; answered with HTTP 404."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no experiment named {name!r} in this namespace")
        self.name = name
