"""Who may use each part of the API: the one place where access by role is declared.

Deny by default: a field with no declaration here cannot be queried by anyone, and
tests/test_permissions.py fails for it. Root fields are declared one by one; other
types are declared whole (object-level rules, such as "a customer sees only their
own invoices", live in the domain and apply on every path). `FIELDS` narrows single
fields of a type further.
"""

from enum import StrEnum

from domains.identity.models import Role


class Access(StrEnum):
    PUBLIC = "public"  # anyone, signed in or not
    SIGNED_IN = "signed_in"  # any role; object-level rules still apply
    CUSTOMER = "customer"  # self-service: a customer's own account
    STAFF = "staff"  # operators and admins
    ADMIN = "admin"


ROLES: dict[Access, frozenset[Role]] = {
    Access.SIGNED_IN: frozenset(Role),
    Access.CUSTOMER: frozenset({Role.CUSTOMER}),
    Access.STAFF: frozenset({Role.OPERATOR, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
}

ROOT_FIELDS: dict[str, Access] = {
    # identity
    "Query.me": Access.SIGNED_IN,
    "Query.node": Access.SIGNED_IN,
    "Mutation.login": Access.PUBLIC,
    "Mutation.refreshToken": Access.PUBLIC,
    "Mutation.requestPasswordReset": Access.PUBLIC,
    "Mutation.resetPassword": Access.PUBLIC,
    "Query.mySessions": Access.SIGNED_IN,
    "Mutation.logout": Access.SIGNED_IN,
    "Mutation.logoutEverywhere": Access.SIGNED_IN,
    "Mutation.revokeSession": Access.SIGNED_IN,
    "Mutation.changePassword": Access.SIGNED_IN,
    "Mutation.updateUser": Access.ADMIN,
    # customers
    "Mutation.updateMyProfile": Access.CUSTOMER,
    "Query.customer": Access.STAFF,
    "Query.customers": Access.STAFF,
    "Query.tariffs": Access.PUBLIC,
    # billing
    "Query.invoices": Access.CUSTOMER,
    "Query.invoice": Access.SIGNED_IN,
    "Query.ledger": Access.STAFF,
    "Query.balanceHistory": Access.CUSTOMER,
    "Mutation.payInvoice": Access.CUSTOMER,
    "Mutation.refundPayment": Access.ADMIN,
    "Mutation.topUpBalance": Access.CUSTOMER,
    # billing, live: customers their own events; staff one customer's, named by customerId
    "Subscription.invoiceUpdated": Access.SIGNED_IN,
    "Subscription.paymentCreated": Access.SIGNED_IN,
    "Subscription.balanceChanged": Access.SIGNED_IN,
    # analytics
    "Query.paymentStatistics": Access.STAFF,
    # federation: a router fetches SDL and entities; entity resolvers apply object rules
    "Query._service": Access.PUBLIC,
    "Query._entities": Access.PUBLIC,
}

TYPES: dict[str, Access] = {
    "Node": Access.SIGNED_IN,
    # Every path to a user checks the viewer (me, node, Customer.user), or is the login
    # that just proved who it is (LoginPayload.user).
    "User": Access.PUBLIC,
    "LoginPayload": Access.PUBLIC,
    "Session": Access.SIGNED_IN,
    "Customer": Access.SIGNED_IN,
    "CustomerConnection": Access.STAFF,
    "CustomerEdge": Access.STAFF,
    "Contract": Access.SIGNED_IN,
    "ServiceSubscription": Access.SIGNED_IN,
    "Tariff": Access.PUBLIC,
    "Invoice": Access.SIGNED_IN,
    "InvoiceConnection": Access.SIGNED_IN,
    "InvoiceEdge": Access.SIGNED_IN,
    "Payment": Access.SIGNED_IN,
    "PaymentConnection": Access.SIGNED_IN,
    "PaymentEdge": Access.SIGNED_IN,
    "Transaction": Access.SIGNED_IN,
    "TransactionConnection": Access.SIGNED_IN,
    "TransactionEdge": Access.SIGNED_IN,
    # Only balanceHistory answers these, to the customer whose balance it is.
    "BalanceEntry": Access.CUSTOMER,
    "BalanceEntryConnection": Access.CUSTOMER,
    "BalanceEntryEdge": Access.CUSTOMER,
    "PaymentPayload": Access.SIGNED_IN,
    "TopUpPayload": Access.CUSTOMER,
    "InvoiceUpdatedEvent": Access.SIGNED_IN,
    "PaymentCreatedEvent": Access.SIGNED_IN,
    "BalanceChangedEvent": Access.SIGNED_IN,
    "PaymentStatistics": Access.STAFF,
    "PaymentDay": Access.STAFF,
    "PaymentTotals": Access.STAFF,
    "Money": Access.PUBLIC,
    "PageInfo": Access.PUBLIC,
    "_Service": Access.PUBLIC,
}

FIELDS: dict[str, Access] = {}


def access_for(type_name: str, field_name: str) -> Access | None:
    """The declared access of `Type.field`, or None when nothing declares it (denied)."""
    coordinate = f"{type_name}.{field_name}"
    return FIELDS.get(coordinate) or ROOT_FIELDS.get(coordinate) or TYPES.get(type_name)


def role_may(access: Access, role: Role | None) -> bool:
    if access is Access.PUBLIC:
        return True
    return role is not None and role in ROLES[access]
