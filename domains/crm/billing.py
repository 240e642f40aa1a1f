"""The timeline's entries for billing's events: payments, refunds, invoices issued, paid and
overdue. Summaries are what a staff member reads at a glance; the reference leads to the
object itself."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.invoice import invoices_by_ids
from domains.billing.models import Refund
from domains.crm.models import TimelineKind
from domains.crm.timeline import add_entry
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.writes import writer

refunds = Refund.__table__


async def on_payment_created(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    paid = f"{data['amount']} {data['currency']} ({data['method']})"
    if data["invoice_id"] is None:
        summary = f"Top-up of {paid} to the balance"
    else:
        # The event names the invoice by id; staff know it by its number.
        found = await invoices_by_ids(writer(session), [data["invoice_id"]])
        invoice = found.get(data["invoice_id"])
        number = invoice.number if invoice is not None else f"#{data['invoice_id']}"
        summary = f"Payment of {paid} for invoice {number}"
    await add_entry(
        session,
        event,
        kind=TimelineKind.PAYMENT,
        summary=summary,
        reference=f"payment:{data['payment_id']}",
    )


async def on_payment_refunded(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    # Refunds are an admin's action; the event does not say whose, the refund row does.
    actor_id = await session.scalar(
        select(refunds.c.created_by).where(refunds.c.id == data["refund_id"])
    )
    summary = (
        f"Refund of {data['amount']} {data['currency']} from payment {data['payment_id']}"
        f" ({data['refunded_amount']} refunded in all): {data['reason']}"
    )
    await add_entry(
        session,
        event,
        kind=TimelineKind.REFUND,
        summary=summary,
        reference=f"payment:{data['payment_id']}",
        actor_id=actor_id,
    )


async def on_invoice_issued(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = (
        f"Invoice {data['number']} issued: {data['amount']} {data['currency']} for"
        f" {data['period_start']} to {data['period_end']}, due {data['due_date']}"
    )
    await _invoice_entry(session, event, TimelineKind.INVOICE_ISSUED, summary)


async def on_invoice_paid(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = f"Invoice {data['number']} paid in full: {data['amount']} {data['currency']}"
    await _invoice_entry(session, event, TimelineKind.INVOICE_PAID, summary)


async def on_invoice_overdue(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = (
        f"Invoice {data['number']} overdue: {data['amount']} {data['currency']}"
        f" was due {data['due_date']}"
    )
    await _invoice_entry(session, event, TimelineKind.INVOICE_OVERDUE, summary)


async def _invoice_entry(
    session: AsyncSession, event: CloudEvent, kind: TimelineKind, summary: str
) -> None:
    await add_entry(
        session, event, kind=kind, summary=summary, reference=f"invoice:{event.data['invoice_id']}"
    )


HANDLERS: dict[str, Handler] = {
    "payment.created": on_payment_created,
    "payment.refunded": on_payment_refunded,
    "invoice.issued": on_invoice_issued,
    "invoice.paid": on_invoice_paid,
    "invoice.overdue": on_invoice_overdue,
}
