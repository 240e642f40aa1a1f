"""Thin field resolvers: authorize, call a domain read or action or a loader, return rows."""
