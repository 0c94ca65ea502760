"""Test helpers: replay recorded AMI transcripts the way the agent delivers them.

The transcripts in data/ami/ are copies of /work/shared/fixtures/ami (Asterisk
22.10.1). `read_ami` parses them with the contract's framing rules, and
`enrich` adds what the agent adds (§3.5): SystemName, EventTime, AgentEventId.
"""
import json
import os
import uuid

from odoo.tests import TransactionCase
from odoo.tools.safe_eval import safe_eval

DATA = os.path.join(os.path.dirname(__file__), "data", "ami")
BASE_TIME = 1795627331.0


def read_ami(name):
    """Messages of one transcript, as dicts (repeated headers become lists)."""
    with open(os.path.join(DATA, name), "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[0].startswith("Asterisk Call Manager/"):
        lines = lines[1:]  # the banner has no blank line after it
    messages, current = [], {}
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            if current:
                messages.append(current)
                current = {}
            continue
        if ": " in line:
            key, value = line.split(": ", 1)
        elif line.endswith(":"):
            key, value = line[:-1], ""
        else:
            continue
        if key in current:
            if not isinstance(current[key], list):
                current[key] = [current[key]]
            current[key].append(value)
        else:
            current[key] = value
    if current:
        messages.append(current)
    return messages


def ami_events(name, names=None, linkedid=None, uniqueids=None):
    """Events of a transcript, filtered by event name and call."""
    out = []
    for msg in read_ami(name):
        if "Event" not in msg:
            continue
        if names and msg["Event"] not in names:
            continue
        if linkedid and msg.get("Linkedid") != linkedid and msg.get("Uniqueid") != linkedid:
            continue
        if uniqueids and msg.get("Uniqueid") not in uniqueids:
            continue
        out.append(msg)
    return out


def enrich(events, start=BASE_TIME, step=0.5, system_name="pbx-test"):
    """Add the agent's enrichment fields; EventTime grows by `step` seconds."""
    out = []
    for i, event in enumerate(events):
        event = dict(event)
        event.setdefault("SystemName", system_name)
        event["EventTime"] = start + i * step
        event["AgentEventId"] = str(uuid.uuid4())
        out.append(event)
    return out


def rewrite(events, mapping):
    """Replace header values (e.g. a recorded Uniqueid by Odoo's ChannelId)."""
    out = []
    for event in events:
        new = {}
        for key, value in event.items():
            if isinstance(value, str):
                for old, repl in mapping.items():
                    if value == old or (value.startswith(old + "-") and key == "Channel"):
                        value = value.replace(old, repl, 1)
            new[key] = value
        out.append(new)
    return out


HANDLER_BY_EVENT = {
    "Newchannel": ("asterisk_plus.channel", "on_ami_new_channel"),
    "Newstate": ("asterisk_plus.channel", "on_ami_update_channel_state"),
    "Hangup": ("asterisk_plus.channel", "on_ami_hangup"),
}


class AsteriskCase(TransactionCase):
    """A server, its agent user, PBX users and replay helpers."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True, mail_create_nolog=True))
        cls.germany = cls.env.ref("base.de")
        cls.server = cls.env["asterisk_plus.server"].create({"name": "Test PBX"})
        cls.server.user.country_id = cls.germany
        cls.agent = cls.server.user
        group_user = cls.env.ref("asterisk_plus.group_asterisk_user")
        Users = cls.env["res.users"].with_context(no_reset_password=True)
        cls.alice = Users.create({"name": "Alice", "login": "alice_pbx", "email": "alice@example.com",
                                  "groups_id": [(6, 0, [group_user.id])], "notification_type": "inbox"})
        cls.bob = Users.create({"name": "Bob", "login": "bob_pbx", "email": "bob@example.com",
                                "groups_id": [(6, 0, [group_user.id])], "notification_type": "inbox"})
        cls.settings = cls.env["asterisk_plus.settings"].get_settings()

    def make_pbx_user(self, user, exten, channels):
        return self.env["asterisk_plus.user"].create({
            "server": self.server.id,
            "user": user.id,
            "exten": exten,
            "channels": [(0, 0, {"name": name}) for name in channels],
        })

    def as_agent(self, model):
        return self.env[model].with_user(self.agent)

    def deliver(self, event, model, method):
        """One delivery, as the agent does it: `execute_kw(model, method, [event])`.

        The event goes through JSON like on the wire."""
        event = json.loads(json.dumps(event))
        return getattr(self.as_agent(model), method)(event)

    def replay_handlers(self, events):
        """Feed events straight to the handlers (bypassing the map's conditions)."""
        results = []
        for event in events:
            target = HANDLER_BY_EVENT.get(event["Event"])
            if target:
                results.append(self.deliver(event, *target))
        return results

    def replay_map(self, events):
        """Feed events through the default events map, conditions included."""
        rows = self.env["asterisk_plus.event"]._agent_rows()
        delivered = []
        for event in events:
            for row in rows:
                if row["source"] != "AMI" or row["name"] != event.get("Event"):
                    continue
                if row["condition"] and not self._condition(row["condition"], event):
                    continue
                self.deliver(event, row["model"], row["method"])
                delivered.append((event["Event"], row["method"]))
        return delivered

    @staticmethod
    def _condition(condition, event):
        try:
            return bool(safe_eval(condition, {"event": event}))
        except Exception:
            return False  # a runtime error skips the handler (§3.3)

    def call_by_uniqueid(self, uniqueid):
        return self.env["asterisk_plus.call"].search([("uniqueid", "=", uniqueid)])

    def bus_messages(self, user, notification_type):
        """Payloads sent on the bus to a user's partner."""
        channel = json.dumps([self.env.cr.dbname, "res.partner", user.partner_id.id], separators=(",", ":"))
        payloads = []
        for row in self.env["bus.bus"].sudo().search([("channel", "=", channel)]):
            message = json.loads(row.message)
            if message["type"] == notification_type:
                payloads.append(message["payload"])
        return payloads
