"""CRM: each customer's timeline, kept by a consumer of billing's and support's events."""
