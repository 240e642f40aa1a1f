"""CRM loaders: a page of each customer's timeline."""

from dataloaders.base import PageLoader
from domains.crm.timeline import timeline_pages_by_customer_ids


class TimelinePagesByCustomerIdLoader(PageLoader):
    """Key: (customer_id, Window)."""

    fetch = staticmethod(timeline_pages_by_customer_ids)
