"""The support service's reaction to a customer's payments (`payment.created`,
`invoice.paid`), in the consumer's transaction.

- Each of the customer's billing tickets still being worked (new, open, pending customer)
  and opened before the payment gets a system message naming it, so the operator and the
  customer see it in the thread without asking billing; a consumer catching up on history
  writes nothing on tickets opened after it.
- When the payment leaves the customer owing nothing (no issued or overdue invoice with an
  amount due, by billing's own `amount_due`), the tickets about suspended service change:
  a no-connection ticket of a customer whose contract is suspended is resolved by the
  system (the suspension was for the debt, now paid; a customer message reopens it within
  the reopen window if the line stays down), and a ticket whose priority the
  service-suspended rule set goes back down by that rule's steps (`ticket.priority_changed`,
  reason "payment"). A no-connection ticket of a customer with no suspended contract is a
  fault, not a debt, and is left alone; so is anything when only the balance was topped up
  (no invoice paid).

Tickets are locked in id order (lifecycle's row lock), before any operator's row, as the
assignment's lock order says. A redelivered event changes nothing: the consumer's claim
runs once per event id, and a second event of the same payment finds the tickets already
moved.
"""

from dataclasses import replace
from datetime import datetime

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.invoice import invoices_by_ids
from domains.billing.models import Invoice
from domains.billing.settlement import PAYABLE, amount_due_column, paid_per_invoice
from domains.clock import utcnow
from domains.customers.models import Contract, ContractStatus
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.reads import any_of, select_rows
from domains.support import events
from domains.support.lifecycle import change_status
from domains.support.models import (
    ACTIVE_STATUSES,
    AuthorKind,
    RuleCondition,
    TicketCategory,
    TicketPriority,
    TicketStatus,
)
from domains.support.priority import PRIORITIES, RANK, rules_in_order
from domains.support.thread import write_message
from domains.support.ticket import TicketRow, tickets
from domains.writes import Write, writer

invoices = Invoice.__table__
contracts = Contract.__table__

# The customer's tickets still being worked that were open when the payment came (a ticket
# opened later is not about it: a consumer catching up on history must not write on it),
# locked, in id order.
_LOCK_ACTIVE = Write(
    select_rows(TicketRow, tickets)
    .where(
        tickets.c.customer_id == bindparam("customer_id"),
        any_of(tickets.c.status, "statuses"),
        tickets.c.created_at <= bindparam("paid_at", type_=tickets.c.created_at.type),
    )
    .order_by(tickets.c.id)
    .with_for_update(),
    TicketRow,
)
_REPRIORITISE = Write(
    update(tickets)
    .where(tickets.c.id == bindparam("ticket_id"))
    .values(
        priority=bindparam("priority"), priority_rule_id=None, updated_at=bindparam("updated_at")
    )
)


async def on_payment_created(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    paid = f"{data['amount']} {data['currency']}"
    if data["invoice_id"] is None:
        note = f"Payment received: {paid} added to the account balance."
    else:
        found = await invoices_by_ids(writer(session), [data["invoice_id"]])
        invoice = found.get(data["invoice_id"])
        number = invoice.number if invoice is not None else f"#{data['invoice_id']}"
        note = f"Payment received: {paid} for invoice {number}."
    await _react(
        session, data["customer_id"], note, event.time, paid_invoice=data["invoice_id"] is not None
    )


async def on_invoice_paid(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    note = f"Invoice {data['number']} is paid in full ({data['amount']} {data['currency']})."
    await _react(session, data["customer_id"], note, event.time, paid_invoice=True)


HANDLERS: dict[str, Handler] = {
    "payment.created": on_payment_created,
    "invoice.paid": on_invoice_paid,
}


async def _react(
    session: AsyncSession, customer_id: int, note: str, paid_at: datetime, *, paid_invoice: bool
) -> None:
    active = await writer(session).fetch(
        _LOCK_ACTIVE, customer_id=customer_id, statuses=sorted(ACTIVE_STATUSES), paid_at=paid_at
    )
    if not active:
        return
    now = utcnow()
    for ticket in active:
        if ticket.category is TicketCategory.BILLING:
            await _say(session, ticket, note, now)
    if not paid_invoice or await _owes(session, customer_id):
        return
    suspended = await _suspended(session, customer_id)
    raises = {
        rule.id: rule.raise_steps
        for rule in await rules_in_order(writer(session))
        if rule.condition is RuleCondition.SERVICE_SUSPENDED
    }
    for ticket in active:
        if ticket.category is TicketCategory.NO_CONNECTION and suspended:
            await _say(
                session,
                ticket,
                "The account owes nothing now, so the service suspended for the debt resumes."
                " This ticket is resolved; reply here if the connection does not come back.",
                now,
            )
            await change_status(session, ticket, TicketStatus.RESOLVED, changed_by=None, now=now)
        elif ticket.priority_rule_id in raises:
            lowered = PRIORITIES[max(RANK[ticket.priority] - raises[ticket.priority_rule_id], 0)]
            await _reprioritise(session, ticket, lowered, now)


async def _say(session: AsyncSession, ticket: TicketRow, body: str, now: datetime) -> None:
    await write_message(
        session,
        ticket=ticket,
        author_kind=AuthorKind.SYSTEM,
        author_id=None,
        body=body,
        internal=False,
        now=now,
    )


async def _owes(session: AsyncSession, customer_id: int) -> bool:
    """Whether an issued or overdue invoice of the customer still has an amount due."""
    paid = paid_per_invoice()
    owed = (
        select(invoices.c.id)
        .select_from(invoices.outerjoin(paid, paid.c.invoice_id == invoices.c.id))
        .where(
            invoices.c.customer_id == customer_id,
            invoices.c.status.in_(PAYABLE),
            amount_due_column(paid) > 0,
        )
    )
    return bool(await session.scalar(select(exists(owed))))


async def _suspended(session: AsyncSession, customer_id: int) -> bool:
    """A contract of the customer is suspended (the priority rules' "service suspended")."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    contracts.c.customer_id == customer_id,
                    contracts.c.status == ContractStatus.SUSPENDED,
                )
            )
        )
    )


async def _reprioritise(
    session: AsyncSession, ticket: TicketRow, lowered: TicketPriority, now: datetime
) -> None:
    """The raise the service-suspended rule gave the ticket, taken back; no rule set the
    priority it has now. Its SLA due times stay as they were: a payment never gives
    support longer to answer."""
    if lowered is ticket.priority:
        return
    await writer(session).execute(
        _REPRIORITISE, ticket_id=ticket.id, priority=lowered, updated_at=now
    )
    await events.priority_changed(
        session,
        ticket_id=ticket.id,
        customer_id=ticket.customer_id,
        old_priority=ticket.priority,
        new_priority=lowered,
        reason="payment",
    )
    await _say(
        session,
        replace(ticket, priority=lowered),
        f"The account owes nothing now: this ticket's priority is {lowered.value} again"
        f" (was {ticket.priority.value}).",
        now,
    )
