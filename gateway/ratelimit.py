"""Gateway budgets, per user and per client address: query cost and mutations.

Queries spend their computed cost (schema/guards/cost.py), mutations one unit per root
field, so aliasing ten mutations into one request spends ten. Login attempts have budgets
of their own in the identity domain. Both use the one limiter in domains/limits.py.
"""

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Literal

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from domains.errors import RateLimited
from domains.identity.throttle import address_key
from domains.limits import Decision, LimiterUnavailable, Rate, RateLimiter
from gateway.settings import Settings
from schema.guards.mutations import mutation_fields

Kind = Literal["query", "mutation"]
MINUTE = timedelta(minutes=1)
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class Budgets:
    """The configured budgets, charged against one limiter."""

    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        self.rates: dict[tuple[Kind, str], Rate] = {
            ("query", "user"): Rate(settings.query_cost_per_user_per_minute, MINUTE),
            ("query", "ip"): Rate(settings.query_cost_per_ip_per_minute, MINUTE),
            ("mutation", "user"): Rate(settings.mutations_per_user_per_minute, MINUTE),
            ("mutation", "ip"): Rate(settings.mutations_per_ip_per_minute, MINUTE),
        }

    async def charge(
        self, kind: Kind, cost: int, *, user_id: int | None, ip: str | None
    ) -> Decision:
        """Spend `cost` from the user's budget and the address's; the tighter answer wins.

        The user's goes first: a request it refuses does not spend the address's, so one
        user over their budget cannot use up what everyone behind the same address (an
        office, a carrier's NAT) shares. Addresses are keyed as the login throttle keys
        them (an IPv6 client's whole /64 is one address).

        Raises LimiterUnavailable when the store is down and the policy is "closed".
        """
        budgets = []
        if user_id is not None:
            budgets.append((f"{kind}:user:{user_id}", self.rates[(kind, "user")]))
        if ip is not None:
            budgets.append((address_key(kind, ip), self.rates[(kind, "ip")]))
        decisions = []
        for key, rate in budgets:
            decision = await self.limiter.acquire(key, rate, cost)
            decisions.append(decision)
            if not decision.allowed:
                break  # the next budget is not spent on a refused request
        return min(decisions, key=_tightness) if decisions else _UNLIMITED


_UNLIMITED = Decision(allowed=True, limit=0, remaining=0, retry_after=0.0, reset_after=0.0)


def _tightness(decision: Decision) -> tuple[bool, float]:
    return (decision.allowed, decision.remaining / max(decision.limit, 1))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """RateLimit-* (IETF httpapi draft) and, when refused, Retry-After."""
    if decision is _UNLIMITED:
        return {}
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(decision.remaining, 0)),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(retry_after_seconds(decision))
    return headers


class OverBudget(RateLimited):
    """A request the caller's budget refused; carries the decision for the RateLimit-* headers."""

    def __init__(self, decision: Decision) -> None:
        seconds = retry_after_seconds(decision)
        super().__init__(f"rate limit exceeded: retry in {seconds} s", retry_after=seconds)
        self.decision = decision


LIMITER_DOWN_MESSAGE = "rate limiting is unavailable; try again shortly"


def retry_after_seconds(decision: Decision) -> int:
    # A request larger than the whole budget never fits; tell the client to wait a period.
    if math.isinf(decision.retry_after):
        return math.ceil(decision.reset_after) or 60
    return max(math.ceil(decision.retry_after), 1)


def graphql_rate_limit(budgets: Budgets) -> type[SchemaExtension]:
    """An extension charging each operation before it executes; refused ones never run.

    It reads `operation_cost` from the context (set by the cost analysis that runs
    before it) and leaves its decision on `context.rate_limit` for the HTTP layer's
    status code and headers.
    """

    class RateLimit(SchemaExtension):
        async def on_execute(self) -> AsyncIterator[None]:
            execution = self.execution_context
            context = execution.context
            if (
                execution.result is None
                and execution.operation_type is not OperationType.SUBSCRIPTION
            ):
                viewer = getattr(context, "viewer", None)
                if execution.operation_type is OperationType.MUTATION:
                    kind: Kind = "mutation"
                    cost = _mutation_cost(execution)
                else:
                    kind, cost = "query", max(getattr(context, "operation_cost", 1), 1)
                try:
                    decision = await budgets.charge(
                        kind,
                        cost,
                        user_id=viewer.user_id if viewer is not None else None,
                        ip=getattr(context, "client_ip", None),
                    )
                except LimiterUnavailable:
                    execution.result = _refusal(LIMITER_DOWN_MESSAGE, SERVICE_UNAVAILABLE)
                else:
                    context.rate_limit = decision
                    if not decision.allowed:
                        refused = OverBudget(decision)
                        execution.result = _refusal(
                            refused.message, refused.code, **refused.extensions
                        )
            yield

    return RateLimit


def _mutation_cost(execution: ExecutionContext) -> int:
    document = execution.graphql_document
    if document is None:
        return 1
    return mutation_fields(execution.schema._schema, document, execution.operation_name)


def _refusal(message: str, code: str, **extensions: object) -> GraphQLExecutionResult:
    return GraphQLExecutionResult(
        data=None, errors=[GraphQLError(message, extensions={"code": code, **extensions})]
    )
