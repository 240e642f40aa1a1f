"""Subscribers, their contracts, subscriptions and the tariff catalogue."""
