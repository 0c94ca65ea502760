import logging
from datetime import timedelta

from odoo import _, api, fields, models

from .common import agent_event, clean_number, event_datetime, header, known, strip_channel_suffix

_logger = logging.getLogger(__name__)


class Channel(models.Model):
    _name = "asterisk_plus.channel"
    _description = "Channel"
    _order = "event_time desc, id desc"
    _rec_name = "channel"

    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade", index=True)
    call = fields.Many2one("asterisk_plus.call", ondelete="cascade", index=True)
    user = fields.Many2one("res.users", index=True, ondelete="set null")
    channel = fields.Char(index=True)
    channel_short = fields.Char(index=True)
    uniqueid = fields.Char(index=True, required=True)
    linkedid = fields.Char(index=True)
    is_primary = fields.Boolean()
    parent_channel = fields.Many2one("asterisk_plus.channel", ondelete="set null")
    context = fields.Char()
    exten = fields.Char()
    callerid_num = fields.Char()
    callerid_name = fields.Char()
    connected_line_num = fields.Char()
    connected_line_name = fields.Char()
    state = fields.Char(string="State code")
    state_desc = fields.Char(string="State")
    was_up = fields.Boolean(help="The channel reached Up at some point.")
    cause = fields.Char(string="Cause code")
    cause_txt = fields.Char(string="Cause")
    event_time = fields.Datetime()
    hangup_date = fields.Datetime()
    system_name = fields.Char()
    is_active = fields.Boolean(default=True, index=True)
    originated = fields.Boolean(help="Created by Odoo before the Originate was sent.")
    seen = fields.Boolean(help="Asterisk reported this channel (Newchannel).")

    _sql_constraints = [
        ("server_uniqueid_uniq", "unique(server, uniqueid)", "A channel with this Uniqueid already exists on this server."),
    ]

    # ---------------------------------------------------------- lookups
    @api.model
    def _agent_channel(self, server, event):
        uniqueid = known(header(event, "Uniqueid"))
        if not uniqueid:
            return self.browse()
        return self.sudo().search([("server", "=", server.id), ("uniqueid", "=", uniqueid)], limit=1)

    # -------------------------------------------------------- handlers
    @api.model
    @agent_event
    def on_ami_new_channel(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        uniqueid = known(header(event, "Uniqueid"))
        if not uniqueid:
            return False
        linkedid = known(header(event, "Linkedid")) or uniqueid
        name = header(event, "Channel")
        when = event_datetime(event)
        user_channel = self.env["asterisk_plus.user_channel"].get_user_channel(name, server)
        state_desc = header(event, "ChannelStateDesc")
        vals = {
            "server": server.id,
            "channel": name,
            "channel_short": strip_channel_suffix(name),
            "uniqueid": uniqueid,
            "linkedid": linkedid,
            "is_primary": uniqueid == linkedid,
            "context": header(event, "Context"),
            "exten": header(event, "Exten"),
            "callerid_num": known(header(event, "CallerIDNum")),
            "callerid_name": known(header(event, "CallerIDName")),
            "connected_line_num": known(header(event, "ConnectedLineNum")),
            "connected_line_name": known(header(event, "ConnectedLineName")),
            "state": header(event, "ChannelState"),
            "state_desc": state_desc,
            "was_up": state_desc == "Up",
            "system_name": header(event, "SystemName"),
            "is_active": True,
            "seen": True,
        }
        if user_channel:
            vals["user"] = user_channel.user.id
        channel = self.sudo().search([("server", "=", server.id), ("uniqueid", "=", uniqueid)], limit=1)
        if channel:
            # Pre-created by originate_call: keep what Odoo already knows.
            if channel.originated:
                vals.pop("exten")
                vals.pop("context")
            channel.write(vals)
            vals["event_time"] = channel.event_time
        else:
            vals["event_time"] = when
            channel = self.sudo().create(vals)
        if channel.is_primary:
            call = channel._attach_primary_call(event, user_channel, when)
        else:
            call = channel._attach_secondary_call(event, user_channel, when)
        call._log_event(_("Channel %s (%s)", name, state_desc), when)
        call._notify_reload()
        return {"call": call.id, "channel": channel.id}

    def _call_vals_from_channel(self, event, user_channel, when):
        """A new call row from this channel, with the §9.4 direction rule."""
        self.ensure_one()
        settings = self.env["asterisk_plus.settings"].get_settings()
        calling_number = clean_number(known(header(event, "CallerIDNum")) or "")
        called_number = known(header(event, "Exten")) or ""
        if called_number == "s":
            called_number = ""
        vals = {
            "uniqueid": self.linkedid,
            "server": self.server.id,
            "calling_number": calling_number,
            "calling_name": known(header(event, "CallerIDName")),
            "called_number": called_number,
            "started": when,
            "status": "progress",
            "is_active": True,
        }
        if user_channel:
            vals.update(direction="out", calling_user=user_channel.user.id)
        elif len(clean_number(calling_number).lstrip("+")) <= settings.internal_number_max_length:
            vals.update(direction="out", direction_by_length=True)
        else:
            vals["direction"] = "in"
        return vals

    def _attach_primary_call(self, event, user_channel, when):
        self.ensure_one()
        Call = self.env["asterisk_plus.call"].sudo()
        call = self.call or Call.search([("server", "=", self.server.id), ("uniqueid", "=", self.uniqueid)], limit=1)
        if call:
            if not self.call:
                self.call = call
            return call
        call = Call._create_quiet(self._call_vals_from_channel(event, user_channel, when))
        self.call = call
        call._match_partner()
        call._add_called_users_by_exten()
        return call

    def _attach_secondary_call(self, event, user_channel, when):
        self.ensure_one()
        Call = self.env["asterisk_plus.call"].sudo()
        call = Call.search([("server", "=", self.server.id), ("uniqueid", "=", self.linkedid)], limit=1)
        if not call:
            # The primary was filtered out (e.g. a Local/ channel): start the call here.
            call = Call._create_quiet(self._call_vals_from_channel(event, user_channel, when))
            call._match_partner()
            call._add_called_users_by_exten()
        self.write({
            "call": call.id,
            "parent_channel": call.channels.filtered("is_primary")[:1].id,
        })
        user = user_channel.user if user_channel else self.env["res.users"]
        if user and user != call.calling_user:
            if call.direction == "out" and call.direction_by_length:
                # A PBX user's phone rings: the length guess was wrong.
                call.write({"direction": "in", "direction_by_length": False, "calling_user": False})
                call._match_partner()
            if user not in call.called_users:
                call.called_users = [(4, user.id)]
            if call.direction == "in":
                call._popup(user)
        return call

    @api.model
    @agent_event
    def on_ami_update_channel_state(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        channel = self._agent_channel(server, event)
        if not channel:
            return False
        when = event_datetime(event)
        state_desc = header(event, "ChannelStateDesc")
        vals = {"state": header(event, "ChannelState"), "state_desc": state_desc}
        for field, name in (("callerid_num", "CallerIDNum"), ("callerid_name", "CallerIDName"),
                            ("connected_line_num", "ConnectedLineNum"), ("connected_line_name", "ConnectedLineName")):
            value = known(header(event, name))
            if value:
                vals[field] = value
        if state_desc == "Up":
            vals["was_up"] = True
        channel.write(vals)
        call = channel.call
        if call and state_desc == "Up" and not channel.is_primary and call.is_active:
            # The calling user's own phone picking up is not the callee answering.
            if not (channel.user and channel.user == call.calling_user):
                if call._set_answered(channel.user, when):
                    call._notify_reload()
        return True

    @api.model
    @agent_event
    def on_ami_hangup(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        channel = self._agent_channel(server, event)
        if not channel:
            return False
        when = event_datetime(event)
        cause = header(event, "Cause")
        state_desc = header(event, "ChannelStateDesc")
        channel.write({
            "cause": cause,
            "cause_txt": header(event, "Cause-txt"),
            "hangup_date": when,
            "is_active": False,
            "state_desc": state_desc or channel.state_desc,
            "was_up": channel.was_up or state_desc == "Up",
        })
        call = channel.call
        if not call:
            return True
        call._log_event(_("Hangup %s: %s", channel.channel, header(event, "Cause-txt")), when)
        if channel.is_primary:
            call._finish(when, cause, channel)
        elif call.is_active and not call._live_channels():
            # The primary never reaches us (filtered Local/ or lost): end with the last leg.
            call._finish(when, cause, channel)
        else:
            call._notify_reload()
        return True

    @api.model
    @agent_event
    def on_ami_originate_response_failure(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        channel = self.browse()
        for name in ("ChannelId", "Uniqueid"):
            uid = known(header(event, name))
            if uid:
                channel = self.sudo().search([("server", "=", server.id), ("uniqueid", "=", uid)], limit=1)
                if channel:
                    break
        if not channel:
            # On failure Asterisk sends `Uniqueid: <unknown>` and the dial string as Channel.
            dial = header(event, "Channel")
            if not dial:
                return False
            channel = self.sudo().search([
                ("server", "=", server.id), ("is_active", "=", True), ("hangup_date", "=", False),
                "|", ("channel_short", "=", dial), ("channel", "=", dial),
            ], order="is_primary desc, id desc", limit=1)
        if not channel:
            return False
        return channel._originate_failed(header(event, "Reason"), header(event, "Response") or "Failure",
                                         when=event_datetime(event))

    def _originate_failed(self, reason, error, notify=True, when=None):
        """Mark a click-to-call failed, unless the hangup already settled it (§9.4)."""
        self.ensure_one()
        if self.hangup_date:
            return False
        when = when or fields.Datetime.now()
        reason = str(reason or "")
        status = ORIGINATE_STATUS.get(reason, "failed")
        self.write({"is_active": False, "hangup_date": when, "cause_txt": _("Originate failed: %s", error)})
        call = self.call
        if call and call.is_active and not call.answered:
            call.write({"status": status, "originate_failed": True})
            call._finish(when)
            user = call.calling_user or self.user
            if notify and user:
                message = (_("Call failed: phone not registered or call declined.") if reason == "0"
                           else _("Call to %s: %s", call.called_number or "", dict(call._fields["status"].selection).get(status)))
                self.env["asterisk_plus.settings"].sudo().asterisk_plus_notify(
                    message, title=_("PBX"), notify_uid=user.id, warning=True,
                )
        return True

    @api.model
    @agent_event
    def update_recording_filename(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        value = header(event, "Value")
        uniqueid = known(header(event, "Uniqueid"))
        if not value or not uniqueid:
            return False
        channel = self._agent_channel(server, event)
        call = channel.call if channel else self.env["asterisk_plus.call"].sudo().search([
            ("server", "=", server.id), ("uniqueid", "=", known(header(event, "Linkedid")) or uniqueid),
        ], limit=1)
        self.env["asterisk_plus.channel_data"].sudo().create({
            "channel": channel.id, "call": call.id, "uniqueid": uniqueid,
            "key": "recording_file_path", "value": value,
        })
        return True

    @api.model
    @agent_event
    def on_agent_channels_snapshot(self, event):
        """Close channels whose Hangup was missed while the AMI link was down (§3.6)."""
        server = self.env["asterisk_plus.server"]._get_agent_server()
        live = event.get("Uniqueids") or []
        if isinstance(live, str):
            live = [u for u in live.replace(",", " ").split() if u]
        when = event_datetime(event)
        stale = self.sudo().search([
            ("server", "=", server.id), ("is_active", "=", True), ("seen", "=", True),
            ("uniqueid", "not in", list(live)), ("event_time", "<", when),
        ])
        stale._close_missed(when, _("Closed: not in the agent's channel snapshot"))
        return {"closed": len(stale)}

    def _close_missed(self, when, reason):
        if not self:
            return
        self.write({"is_active": False, "hangup_date": when, "cause_txt": reason})
        for call in self.call.filtered("is_active"):
            if not call._live_channels():
                call._finish(when, None, call.channels.filtered("is_primary")[:1])

    @api.autovacuum
    def _gc_channel_data(self):
        limit = fields.Datetime.now() - timedelta(hours=24)
        self.env["asterisk_plus.channel_data"].sudo().search([("create_date", "<", limit)]).unlink()


ORIGINATE_STATUS = {"3": "noanswer", "5": "busy"}


class ChannelData(models.Model):
    _name = "asterisk_plus.channel_data"
    _description = "Channel data"

    channel = fields.Many2one("asterisk_plus.channel", ondelete="cascade", index=True)
    call = fields.Many2one("asterisk_plus.call", ondelete="cascade", index=True)
    uniqueid = fields.Char(index=True)
    key = fields.Char(required=True, index=True)
    value = fields.Char()
