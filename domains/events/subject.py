"""Event subjects, `<kind>:<id>`: what an event is about, written in this one place.

A subject is an outbox row's `subject`, its CloudEvent's `subject` and its Kafka key, so one
object's events stay in order, and a live stream over one object is the stream of its
subject. A domain whose events are about another kind of object declares that kind once,
beside its events (`TICKET = SubjectKind("ticket")`), and builds its subjects through it;
the kinds several domains share are declared here.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SubjectKind:
    name: str

    def of(self, id: int) -> str:
        """The subject of the object `id` of this kind."""
        return f"{self.name}:{id}"


# A customer account: billing's events are about one (its balance, invoices, payments).
CUSTOMER = SubjectKind("customer")
# A user account: identity's events (a password reset, a password changed).
USER = SubjectKind("user")
