"""The audit log: what staff did, recorded in the unit of work that did it."""
