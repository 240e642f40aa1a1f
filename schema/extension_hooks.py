"""Strawberry's extension hooks, entered without decorating each hook anew on every request.

For each of an operation's four phases (operation, parsing, validation, execution) and each
of its ten extensions, strawberry's runner makes the hook a context manager by
`contextlib.contextmanager(MethodType(hook, extension))`: a new decorated function
(functools.wraps copying the hook's metadata) every time, to make the context manager
`_GeneratorContextManager(hook, (extension,), {})`. This runner makes that context manager
directly, and tells a generator hook from an async one once per hook function. What enters
and leaves the hooks, and in what order, is strawberry's own (its context managers' enter
and exit are unchanged).
"""

from contextlib import _AsyncGeneratorContextManager, _GeneratorContextManager
from functools import cache, partial
from inspect import isasyncgenfunction, isgeneratorfunction
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner


@cache
def _kind(hook: Any) -> str:
    if isgeneratorfunction(hook):
        return "generator"
    return "async generator" if isasyncgenfunction(hook) else "callable"


class _Hooks:
    """`get_hook` of strawberry's phase context managers, without the per-call decoration."""

    __slots__ = ()
    HOOK_NAME: str
    default_hook: Any

    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        hook = getattr(type(extension), self.HOOK_NAME)
        if hook is self.default_hook:
            return None
        kind = _kind(hook)
        if kind == "generator":
            manager = partial(_GeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=manager, is_async=False)
        if kind == "async generator":
            manager = partial(_AsyncGeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=manager, is_async=True)
        return super().get_hook(extension)  # type: ignore[misc] - a plain function: strawberry's


class _Operation(_Hooks, OperationContextManager):
    __slots__ = ()


class _Parsing(_Hooks, ParsingContextManager):
    __slots__ = ()


class _Validation(_Hooks, ValidationContextManager):
    __slots__ = ()


class _Executing(_Hooks, ExecutingContextManager):
    __slots__ = ()


class HooksRunner(SchemaExtensionsRunner):
    def operation(self) -> OperationContextManager:
        return _Operation(self.extensions)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self.extensions)

    def validation(self) -> ValidationContextManager:
        return _Validation(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self.extensions)
