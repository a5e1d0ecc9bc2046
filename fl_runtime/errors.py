"""The runtime's one error type for a federation that cannot go on.

Its own module, free of Flower and AWS imports, because the server app, the AWS orchestration and the
CDK app's config checks all use it (or its neighbours in ``kickoff``) without needing each other.
"""


class FederationError(RuntimeError):
    """The federation cannot go on; the message says why and which client."""
