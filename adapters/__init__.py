"""Implementations, over outside systems (Redis, Kafka, the acquirer's HTTP API, Prometheus),
of the interfaces `domains/` declares. Only the wiring (gateway/services.py, gateway/worker.py,
gateway/cli.py) chooses them; nothing below gateway imports this package."""
