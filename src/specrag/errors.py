"""The one base class of user errors: a problem with what the user asked for (a bad
input, an unknown name, a limit passed), as opposed to a defect or an outage.

The REST API answers a UserError with its subclass's 4xx status and message; any other
exception is a 500 with a request id, logged with its traceback. The CLI prints a
UserError as one ``error: ...`` line (exit 2) and anything else with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported with its message and no traceback."""
