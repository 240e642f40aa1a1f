"""Every table, for Alembic and the tests: each domain's `domains/<name>/models.py`, found
by that name, so a new domain's tables need no entry here."""

import importlib
import importlib.util
import pkgutil

import domains
from domains import outbox
from domains.base import Base

for package in pkgutil.iter_modules(domains.__path__):
    if package.ispkg and importlib.util.find_spec(f"domains.{package.name}.models") is not None:
        importlib.import_module(f"domains.{package.name}.models")

metadata = Base.metadata

__all__ = ["metadata", "outbox"]
