"""Gateway budgets, per user and per client address: query cost and mutations.

Queries spend their computed cost (schema/hardening.py), mutations one unit per root
field, so aliasing ten mutations into one request spends ten. Login attempts have budgets
of their own in the identity domain. Both use the one limiter in domains/limits.py.
"""

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Literal

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from domains.limits import Decision, LimiterUnavailable, Rate, RateLimiter
from gateway.settings import Settings

Kind = Literal["query", "mutation"]
MINUTE = timedelta(minutes=1)


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
        """Spend `cost` from the address's budget and the user's; the tighter answer wins.

        Raises LimiterUnavailable when the store is down and the policy is "closed".
        """
        decisions = []
        for scope, subject in (("ip", ip), ("user", user_id)):
            if subject is None:
                continue
            decision = await self.limiter.acquire(
                f"{kind}:{scope}:{subject}", self.rates[(kind, scope)], cost
            )
            decisions.append(decision)
            if not decision.allowed:
                break  # the other budget is not spent on a refused request
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


def retry_after_seconds(decision: Decision) -> int:
    # A request larger than the whole budget never fits; tell the client to wait a period.
    if math.isinf(decision.retry_after):
        return math.ceil(decision.reset_after) or 60
    return max(math.ceil(decision.retry_after), 1)


def _mutation_fields(document: object, operation_name: str | None) -> int:
    for definition in getattr(document, "definitions", ()):
        if (
            isinstance(definition, OperationDefinitionNode)
            and definition.operation.value == "mutation"
            and (
                operation_name is None or getattr(definition.name, "value", None) == operation_name
            )
        ):
            return max(len(definition.selection_set.selections), 1)
    return 1


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
                    cost = _mutation_fields(execution.graphql_document, execution.operation_name)
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
                    execution.result = _refusal(
                        "rate limiting is unavailable; try again shortly",
                        "SERVICE_UNAVAILABLE",
                    )
                else:
                    context.rate_limit = decision
                    if not decision.allowed:
                        seconds = retry_after_seconds(decision)
                        execution.result = _refusal(
                            f"rate limit exceeded: retry in {seconds} s",
                            "RATE_LIMITED",
                            retryAfter=seconds,
                        )
            yield

    return RateLimit


def _refusal(message: str, code: str, **extensions: object) -> GraphQLExecutionResult:
    return GraphQLExecutionResult(
        data=None, errors=[GraphQLError(message, extensions={"code": code, **extensions})]
    )
