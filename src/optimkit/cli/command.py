"""Typer commands from the options models, and one-line usage errors for every command.

`options_command(Model)` turns a function ``fn(config, json, ..., **flags)`` into a typer
command whose flags are the model's fields (each with its help text and panel, a ``--x/--no-x``
pair for a bool, a comma-separated string for a list); parameters the function declares itself
keep their own declaration. `OneLineErrors` is the app's group class: a typer/click usage error
(a bad typed value such as ``--threads 1e12``, an unknown option, a missing value) prints one
line ``error: ...`` and exits 2, like every other usage error of the CLI.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo
from typer.core import TyperGroup

from optimkit.cli.options import Options


class OneLineErrors(TyperGroup):
    """Usage errors (exit 2) as one line on stderr, without typer's usage panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        from typer._click.exceptions import ClickException, UsageError

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)  # fmt: skip
        except UsageError as e:
            if not standalone_mode:
                raise
            message = " ".join(e.format_message().split())
            typer.echo(f"error: {message}", err=True)
            sys.exit(2)
        except ClickException as e:
            if not standalone_mode:
                raise
            typer.echo(f"error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def _cli_type(annotation: Any) -> Any:
    """The command-line type of a field: bool, int, float or str (lists are comma-separated
    strings; Literal choices and paths are strings validated by the model)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _cli_type(args[0]) if len(args) == 1 else str
    if annotation in (bool, int, float, str):
        return annotation
    return str  # a Path too: the model sees the text as given ('' included)


def option_parameters(model: type[Options], skip: Sequence[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per field of `model` (except `skip` and config-only fields)."""
    out = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if name in skip or extra.get("cli") is False:
            continue
        out.append(_parameter(name, f, extra))
    return out


def _parameter(name: str, f: FieldInfo, extra: dict[str, Any]) -> inspect.Parameter:
    kind = _cli_type(f.annotation)
    flag = "--" + name.replace("_", "-")
    decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
    if "flags" in extra:
        decls = tuple(extra["flags"])
    panel = extra.get("group")
    info = typer.Option(*decls, help=f.description, rich_help_panel=panel, show_default=False)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[kind | None, info],  # type: ignore[valid-type]
    )  # fmt: skip


def options_command(model: type[Options]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A typer command from `fn(<its own typer parameters>, **flags)`: its ``**flags`` become
    the flags of `model`'s fields (those `fn` does not declare itself)."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in own}
        params = [p.replace(kind=p.KEYWORD_ONLY) for p in own]
        params += option_parameters(model, skip=tuple(names))

        def command(**kwargs: Any) -> None:
            fn(**kwargs)

        command.__name__ = fn.__name__
        command.__qualname__ = fn.__qualname__
        command.__doc__ = fn.__doc__
        command.__module__ = fn.__module__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap
