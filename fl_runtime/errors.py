"""One error hierarchy for the runtime, the CDK app and the command line, and what each kind means.

- ``BadInput``: the user can fix it (a data file, a flag, a setting, an output that already exists);
  the message names the file, column, line, flag or field. The command line exits 2, and nothing was
  written or started.
- ``RunFailed``: the input was fine but the run could not finish (a client dropped below the minimum,
  a process died, AWS refused a call); the message says why and, where it applies, which client. Exit 1.
- Anything else is a bug: exit 1 with "internal error" and the traceback, never "bad input".

Free of Flower and AWS imports: the Flower apps, the launchers and the CDK app all raise these.
"""

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130  # what the command lines return for each


class FlError(Exception):
    """Base of every error this project raises on purpose."""


class BadInput(FlError):
    """Input that cannot be used; the message names what to fix."""


class DataError(BadInput):
    """A data file that cannot be used; the message names the file, the column and the line."""


class OptionsError(BadInput):
    """A command-line flag, run config key or node config key with an unusable value; the message names it."""


class OutputExists(BadInput):
    """An output would overwrite something that is already there; the message names it."""


class RequestRefused(BadInput):
    """A client's launcher refuses what the server asked; the message names the field and why."""


class ConfigError(BadInput):
    """A deployment setting (the CDK app's federation config) is missing or invalid; the message names the field."""


class RunFailed(FlError):
    """The run could not finish; the message says why."""


class FederationError(RunFailed):
    """The federation cannot go on; the message says why and which client."""


class ProcessError(RunFailed):
    """A Flower process or CLI call that a launcher started failed; the message says which and why."""


class BundleError(RunFailed):
    """The code bundle could not be built (typically: the package index unreachable while the wheel cache is empty)."""
