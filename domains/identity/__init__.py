"""Users, roles, credentials and sessions."""
