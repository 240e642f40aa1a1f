"""Entities that several subgraphs contribute fields to, assembled once from their parts."""

import strawberry

from schema.billing import CustomerBillingFields
from schema.customers import CustomerFields, UserCustomerFields
from schema.identity import UserFields
from schema.shared import Node


@strawberry.federation.type(keys=["id"], description="A person who signs in.")
class User(UserFields, UserCustomerFields, Node):
    pass


@strawberry.federation.type(keys=["id"], description="A subscriber's account.")
class Customer(CustomerFields, CustomerBillingFields, Node):
    pass
