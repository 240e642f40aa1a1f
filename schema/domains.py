"""The domains this gateway serves, in composition order: adding one is adding it here."""

from resolvers.audit import audit_mutations
from schema import analytics, billing, crm, customers, identity, notifications, support
from schema.plugin import Domain

DOMAINS: tuple[Domain, ...] = (
    identity.domain,
    customers.domain,
    billing.domain,
    analytics.domain,
    support.domain,
    crm.domain,
    notifications.domain,
)

# Every staff mutation goes to the audit log, whichever domain declares it.
for _domain in DOMAINS:
    audit_mutations(_domain.mutation)
