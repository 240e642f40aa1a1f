"""Refusals of tariff changes, the catalogue's changes and pauses, each with its code."""

from domains.errors import DomainError


class TariffNotAvailable(DomainError):
    """Archived, of another segment or currency, or the subscription's own tariff."""

    code = "TARIFF_NOT_AVAILABLE"


class DowngradeAtPeriodEnd(DomainError):
    """A tariff that is not pricier takes effect when the period ends, never now."""

    code = "TARIFF_DOWNGRADE_AT_PERIOD_END"


class TariffChangeScheduled(DomainError):
    """A change is already scheduled: cancel it first."""

    code = "TARIFF_CHANGE_SCHEDULED"


class NoTariffChangeScheduled(DomainError):
    code = "NO_TARIFF_CHANGE_SCHEDULED"


class SubscriptionNotActive(DomainError):
    """Suspended, cancelled (or, for a tariff change, paused) subscriptions are left as
    they are."""

    code = "SUBSCRIPTION_NOT_ACTIVE"


class TariffCodeTaken(DomainError):
    code = "TARIFF_CODE_TAKEN"


class TariffArchived(DomainError):
    code = "TARIFF_ARCHIVED"


class PauseTooShort(DomainError):
    """Fewer days than KABINET_PAUSE_MIN_DAYS."""

    code = "PAUSE_TOO_SHORT"


class PauseLimit(DomainError):
    """More paused days in a calendar year than KABINET_PAUSE_MAX_DAYS."""

    code = "PAUSE_LIMIT"


class PauseOverlaps(DomainError):
    code = "PAUSE_OVERLAPS"


class NotPaused(DomainError):
    """No pause running or ahead to end."""

    code = "NOT_PAUSED"


class EmailTaken(DomainError):
    """Another account signs in with this email."""

    code = "EMAIL_TAKEN"


class ContractNumTaken(DomainError):
    code = "CONTRACT_NUM_TAKEN"


class ContractTerminated(DomainError):
    code = "CONTRACT_TERMINATED"
