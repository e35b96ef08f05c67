"""The one exception type for user mistakes.

Anything the user can fix (a bad config key, a missing file, a malformed line) raises
`LinguaLiftError` with a one-line message that names the place and the fix. The CLI prints it as
`error: …` and exits with code 2; everything else is a bug and keeps its traceback.
"""


class LinguaLiftError(Exception):
    """A user-fixable problem; its message is shown as one line, without a traceback."""

    exit_code = 2
