"""Helpers shared by the handlers: idempotency, event fields, number cleanup."""
import functools
import logging
import re
from datetime import datetime, timezone

_logger = logging.getLogger(__name__)

# Values Asterisk sends when it has nothing to say.
UNKNOWN_VALUES = ("", "<unknown>", "unknown")

# `PJSIP/101-0000000a`, `Local/100@test-00000001;2`, `SIP/trunk-0000abcd`.
_CHANNEL_SUFFIX = re.compile(r"^(?P<name>.+?)-[0-9a-fA-F]{8}(?:;\d+)?$")
_NUMBER_JUNK = re.compile(r"[\s()\-.]")


def agent_event(method):
    """Drop a repeated delivery of one AMI event to one handler.

    The agent delivers at least once and tags every event with an
    `AgentEventId` that survives retries and restarts.  The receipt row is
    written in the handler's own transaction, so it commits or rolls back
    together with the handler's effects: a failed attempt leaves no receipt
    and the retry runs the handler again.  A concurrent duplicate blocks on
    the unique index until the first commits, then sees the conflict.
    """

    @functools.wraps(method)
    def wrapper(self, event, *args, **kwargs):
        key = event.get("AgentEventId") if isinstance(event, dict) else None
        if key:
            target = "%s.%s" % (self._name, method.__name__)
            self.env.cr.execute(
                """
                INSERT INTO asterisk_plus_event_receipt
                    (key, target, create_uid, write_uid, create_date, write_date)
                VALUES (%s, %s, %s, %s, now() at time zone 'UTC', now() at time zone 'UTC')
                ON CONFLICT (key, target) DO NOTHING
                RETURNING id
                """,
                (str(key), target, self.env.uid, self.env.uid),
            )
            if not self.env.cr.fetchone():
                _logger.debug("duplicate delivery %s of %s ignored", key, target)
                return {"duplicate": True}
        return method(self, event, *args, **kwargs)

    return wrapper


def header(event, name, default=""):
    """Case-insensitive header lookup; list values give their last item."""
    if not isinstance(event, dict):
        return default
    value = event.get(name)
    if value is None:
        lower = name.lower()
        for key, val in event.items():
            if key.lower() == lower:
                value = val
                break
    if value is None:
        return default
    if isinstance(value, list):
        value = value[-1] if value else default
    return value


def known(value):
    """The value, or False for Asterisk's placeholders."""
    if value is None:
        return False
    value = str(value).strip()
    if value.lower() in UNKNOWN_VALUES:
        return False
    return value


def event_datetime(event):
    """`EventTime` (float unix seconds) as a naive UTC datetime; now if absent.

    Handlers use the event's own time because a backlog can replay minutes
    after the fact.
    """
    raw = header(event, "EventTime")
    try:
        ts = float(raw)
    except (TypeError, ValueError):
        return datetime.utcnow().replace(microsecond=0)
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None)


def to_utc_datetime(value):
    """A time the agent sent (unix seconds, or ISO 8601 with or without a zone) as a naive UTC
    datetime, or False when empty or unreadable."""
    if value in (None, False, ""):
        return False
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).replace(tzinfo=None)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def strip_channel_suffix(channel):
    """`PJSIP/101-00000000` -> `PJSIP/101`; `Local/1@ctx-0000000a;2` -> `Local/1@ctx`."""
    if not channel:
        return ""
    match = _CHANNEL_SUFFIX.match(channel)
    return match.group("name") if match else channel


def clean_number(number):
    """Remove spaces and `()-.`, turn a leading `00` into `+`."""
    if not number:
        return ""
    number = _NUMBER_JUNK.sub("", str(number))
    if number.startswith("00"):
        number = "+" + number[2:]
    return number


def dial_number(number):
    """The number as it goes into an Originate `Exten`."""
    return clean_number(number)
