"""One exception type for input problems; its message is one line that names the problem and the fix."""


class InputError(ValueError):
    pass
