"""Which domain, and so which topic, each event type belongs to.

A domain that adds events adds its type prefix here; everything downstream (relay topics,
consumers, subscriptions) follows from the event type.
"""

DOMAIN_OF_PREFIX = {
    "identity": "identity",
    "payment": "billing",
    "invoice": "billing",
    "balance": "billing",
    "ticket": "support",
}


def domain_of(event_type: str) -> str:
    prefix = event_type.split(".", 1)[0]
    try:
        return DOMAIN_OF_PREFIX[prefix]
    except KeyError:
        raise ValueError(f"event type {event_type!r} belongs to no known domain") from None
