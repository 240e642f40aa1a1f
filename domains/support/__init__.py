"""Support: customers' tickets, their threads, operators, priority rules and SLA policies."""
