"""`module:function` specs: how a user names their own Python code in a flag or a config file."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from services.core.errors import InvalidRequestError


def load_function(spec: str, what: str = "function") -> Callable:
    """`module:function` -> the function; a clear error naming `what` when it does not resolve."""
    module_name, _, function_name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise InvalidRequestError(f"{what} {spec!r} is not an importable module:function ({error})") from None
    if not callable(function):
        raise InvalidRequestError(f"{what} {spec!r} is not callable")
    return function
