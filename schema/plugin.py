"""A domain's plug-in: everything the composition, the gateway and the worker take from it.

Each subgraph module (`schema/<domain>.py`) ends with its `Domain`; `schema/domains.py`
lists them. The composed schema, each subgraph, `node(id:)`, the permission table, the
REST routes and their error statuses, event topics and the worker's consumers are all made
from that list, so a new domain is its own files plus one entry there.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from domains.events.consumer import Handler as EventHandler
from domains.identity.session import SessionsEnded
from resolvers.rest import RestRoute
from schema.access import Access


@dataclass(frozen=True, slots=True)
class Domain:
    # The subgraph's name (`/subgraphs/<name>/graphql`) and the domain its events belong to.
    name: str
    query: type | None = None
    mutation: type | None = None
    subscription: type | None = None
    # Node types it owns: `node(id:)` and `_entities` resolve them by `resolve_reference`.
    nodes: tuple[type, ...] = ()
    # Its fields of entities several domains share (schema/entities.py assembles them),
    # by entity name; the owner's part carries the key, `id`, and `resolve_reference`.
    entity_parts: Mapping[str, type] = field(default_factory=dict)
    # Who may use what: "Type.field" for root fields (and single fields), "Type" for the
    # rest of a type. Deny by default: what no domain declares, nobody may query.
    access: Mapping[str, Access] = field(default_factory=dict)
    rest: tuple[RestRoute, ...] = ()
    # HTTP status of its error codes on REST routes (others: 400).
    error_status: Mapping[str, int] = field(default_factory=dict)
    # Prefixes of its event types (`payment` for `payment.created`): its topic carries them.
    events: tuple[str, ...] = ()
    # Its services that react to events: consumer name -> handler per event type.
    consumers: Mapping[str, Mapping[str, EventHandler]] = field(default_factory=dict)
    # Told when a user's last session ends, in that unit of work (identity's Sessions).
    sessions_ended: tuple[SessionsEnded, ...] = ()
