"""Domain events on the wire: CloudEvents, the bus they travel on, the relay and consumers."""
