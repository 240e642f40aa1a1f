"""Notifications: what the customer is told, on which channel, and whether it arrived."""
