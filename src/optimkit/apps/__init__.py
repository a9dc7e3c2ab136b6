"""End-to-end applications, each against the library its users would otherwise pick.

Every module here declares ``APP = App(...)`` (see `optimkit.apps.base`); `APPS` collects
them by name, and ``optimkit app <name>`` runs one.
"""

from __future__ import annotations

import importlib
import pkgutil

from optimkit.apps.base import App, AppOptions, AppResult, write_app_report


def _discover() -> dict[str, App]:
    found: dict[str, App] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        app = getattr(module, "APP", None)
        if isinstance(app, App):
            found[app.name] = app
    return found


APPS: dict[str, App] = _discover()


def get_app(name: str) -> App:
    if name not in APPS:
        raise ValueError(f"app: unknown name {name!r}; valid: {', '.join(APPS) or '(none)'}")
    return APPS[name]


__all__ = ["APPS", "App", "AppOptions", "AppResult", "get_app", "write_app_report"]
