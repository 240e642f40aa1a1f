"""Analytics: counters fed by domain events, read by staff."""
