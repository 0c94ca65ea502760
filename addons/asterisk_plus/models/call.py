import logging
from datetime import timedelta

from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

from .common import agent_event, clean_number, event_datetime, header, known

_logger = logging.getLogger(__name__)

STATUSES = [
    ("progress", "In progress"),
    ("answered", "Answered"),
    ("noanswer", "No answer"),
    ("busy", "Busy"),
    ("failed", "Failed"),
    ("ended", "Ended"),
]
RELOAD_CHANNEL = "asterisk_plus_actions"
USER_WRITABLE = {"notes", "partner", "ref", "message_main_attachment_id"}


class Call(models.Model):
    _name = "asterisk_plus.call"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _description = "Call"
    _order = "started desc, id desc"
    _rec_name = "display_label"

    uniqueid = fields.Char(required=True, index=True, readonly=True, help="Primary Uniqueid, or Odoo's ChannelId for click-to-call.")
    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade", index=True)
    display_label = fields.Char(compute="_compute_display_label", string="Call")
    calling_number = fields.Char(index=True)
    calling_name = fields.Char()
    called_number = fields.Char(index=True)
    started = fields.Datetime(index=True)
    answered = fields.Datetime()
    ended = fields.Datetime()
    direction = fields.Selection([("in", "Incoming"), ("out", "Outgoing")], index=True)
    direction_by_length = fields.Boolean(help="Direction was guessed from the caller number's length.")
    status = fields.Selection(STATUSES, default="progress", required=True, index=True)
    originate_failed = fields.Boolean(readonly=True)
    is_active = fields.Boolean(default=True, index=True)
    channels = fields.One2many("asterisk_plus.channel", "call")
    recordings = fields.One2many("asterisk_plus.recording", "call")
    partner = fields.Many2one("res.partner", index=True, ondelete="set null")
    calling_user = fields.Many2one("res.users", index=True, ondelete="set null")
    answered_user = fields.Many2one("res.users", index=True, ondelete="set null")
    called_users = fields.Many2many("res.users", "asterisk_plus_call_called_user_rel", "call_id", "user_id")
    ref = fields.Reference(selection="_ref_selection", string="Reference")
    notes = fields.Html()
    duration = fields.Integer(help="Seconds from answer to end.")
    duration_human = fields.Char(compute="_compute_duration_human", string="Duration (h:m:s)")
    is_transfer = fields.Boolean()
    events = fields.One2many("asterisk_plus.call_event", "call")
    is_missed = fields.Boolean(compute="_compute_is_missed", store=True)
    summary_posted = fields.Boolean(readonly=True)
    popup_users = fields.Many2many(
        "res.users", "asterisk_plus_call_popup_user_rel", "call_id", "user_id",
        help="Users already shown the incoming-call popup.",
    )

    _sql_constraints = [
        ("server_uniqueid_uniq", "unique(server, uniqueid)", "A call with this Uniqueid already exists on this server."),
    ]

    def write(self, vals):
        if not (self.env.su or self.env.user.has_group("asterisk_plus.group_asterisk_supervisor")):
            # Users annotate their calls; the call's facts come from the PBX only.
            forbidden = set(vals) - USER_WRITABLE
            if forbidden:
                raise AccessError(_("Only supervisors can change: %s", ", ".join(sorted(forbidden))))
        return super().write(vals)

    # ------------------------------------------------------------ helpers
    @api.model
    def _create_quiet(self, vals):
        """Create from a handler: no creation log, no follower, no tracking."""
        return self.sudo().with_context(
            mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True,
        ).create(vals)

    @api.model
    def _ref_models(self):
        """Models a call can refer to; sub-modules extend this."""
        return ["res.partner"]

    @api.model
    def _ref_selection(self):
        models_ = self.env["ir.model"].sudo().search([("model", "in", self._ref_models())])
        return [(m.model, m.name) for m in models_]

    @api.depends("direction", "calling_number", "called_number", "partner")
    def _compute_display_label(self):
        for call in self:
            other = call.calling_number if call.direction == "in" else call.called_number
            label = call.partner.display_name or other or _("Unknown")
            arrow = "\u2190" if call.direction == "in" else "\u2192"
            call.display_label = "%s %s" % (arrow, label)

    @api.depends("duration")
    def _compute_duration_human(self):
        for call in self:
            call.duration_human = str(timedelta(seconds=call.duration or 0))

    @api.depends("direction", "status", "is_active")
    def _compute_is_missed(self):
        for call in self:
            call.is_missed = call.direction == "in" and not call.is_active and call.status in ("noanswer", "busy", "failed")

    def _log_event(self, text, when):
        self.ensure_one()
        self.env["asterisk_plus.call_event"].sudo().create({"call": self.id, "event": text, "event_time": when})

    @api.model
    def _notify_reload(self):
        self.env["bus.bus"].sudo()._sendone(RELOAD_CHANNEL, "reload_view", {"model": self._name})

    def _live_channels(self):
        """Active channels Asterisk reported (an unseen pre-created one does not count)."""
        return self.channels.filtered(lambda c: c.is_active and (c.seen or not c.originated))

    def _match_partner(self):
        for call in self:
            number = call.calling_number if call.direction == "in" else call.called_number
            if not number or call.partner:
                continue
            found = self.env["res.partner"].sudo().get_partner_by_number(number, call.server.country_id.code or None)
            if found.get("id"):
                call.partner = found["id"]
            elif call.direction == "in" and self.env["asterisk_plus.settings"].get_settings().auto_create_partners:
                call._auto_create_partner(number)

    def _auto_create_partner(self, number):
        """A contact for an unknown external caller (setting auto_create_partners)."""
        self.ensure_one()
        settings = self.env["asterisk_plus.settings"].get_settings()
        if len(clean_number(number).lstrip("+")) < settings.min_external_number_length:
            return
        code = self.server.country_id.code or None
        Partner = self.env["res.partner"].sudo()
        phone = Partner._asterisk_format_e164(number, code) or clean_number(number)
        self.partner = Partner.create({
            "name": self.calling_name or phone,
            "phone": phone,
            "country_id": self.server.country_id.id or False,
        })

    def _add_called_users_by_exten(self):
        for call in self:
            if not call.called_number:
                continue
            pbx_user = self.env["asterisk_plus.user"].sudo().search([
                ("server", "=", call.server.id), ("exten", "=", call.called_number),
            ], limit=1)
            if pbx_user and pbx_user.user != call.calling_user:
                call.called_users = [(4, pbx_user.user.id)]

    def _popup(self, user):
        """Incoming-call popup (and optional auto-open) for one called user (§9.6)."""
        self.ensure_one()
        if user in self.popup_users:
            return False
        self.popup_users = [(4, user.id)]
        pbx_user = self.env["asterisk_plus.user"].sudo().search([
            ("server", "=", self.server.id), ("user", "=", user.id),
        ], limit=1)
        if not pbx_user or not pbx_user.call_popup_is_enabled:
            return False
        caller = self.partner.display_name or self.calling_name or _("Unknown caller")
        payload = {
            "title": _("Incoming call"),
            "message": "%s %s" % (caller, self.calling_number or ""),
            "sticky": bool(pbx_user.call_popup_is_sticky),
            "warning": False,
            "number": self.calling_number or "",
            "call_id": self.id,
            "partner_id": self.partner.id or False,
            "partner_name": self.partner.display_name or "",
        }
        if self.ref:
            payload.update(ref_model=self.ref._name, ref_id=self.ref.id, ref_name=self.ref.display_name)
        bus = self.env["bus.bus"].sudo()
        bus._sendone(user.partner_id, "asterisk_plus_notify", payload)
        target = self.ref or self.partner
        if pbx_user.open_reference and target:
            bus._sendone(user.partner_id, "open_record", {"model": target._name, "res_id": target.id})
        return True

    # ------------------------------------------------------- transitions
    def _set_answered(self, user, when):
        self.ensure_one()
        if self.answered:
            return False
        vals = {"status": "answered", "answered": when}
        if user:
            vals["answered_user"] = user.id
        self.write(vals)
        self._log_event(_("Answered%s", (" by %s" % user.name) if user else ""), when)
        return True

    def _finish(self, when, cause=None, primary=None):
        """The call ends (§9.4): decide the final status and notify."""
        self.ensure_one()
        if not self.is_active and self.ended:
            return False
        vals = {"ended": when, "is_active": False}
        if self.answered:
            vals["status"] = "answered"
            vals["duration"] = max(0, int((when - self.answered).total_seconds()))
        elif self.originate_failed:
            pass  # the OriginateResponse already said busy/no answer/failed
        else:
            try:
                cause = int(cause)
            except (TypeError, ValueError):
                cause = None  # the Hangup was missed (snapshot, restart)
            if cause == 17:
                vals["status"] = "busy"
            elif cause == 19:
                vals["status"] = "noanswer"
            elif len(self.channels) > 1:
                vals["status"] = "noanswer"
            elif cause in (16, None) and primary and primary.was_up:
                vals["status"] = "ended"
            else:
                vals["status"] = "failed"
        self.write(vals)
        self._log_event(_("Ended: %s", dict(STATUSES).get(self.status)), when)
        self._on_call_ended()
        return True

    def _on_call_ended(self):
        self.ensure_one()
        self._post_summary()
        if self.is_missed:
            self._notify_missed()
        self._queue_recordings()
        self._notify_reload()

    def _summary_html(self):
        self.ensure_one()
        if self.direction == "in":
            head = _("Incoming call from %s", self.calling_number or _("unknown number"))
        else:
            head = _("Outgoing call to %s", self.called_number or _("unknown number"))
        parts = [escape(head), escape(dict(STATUSES).get(self.status))]
        if self.answered_user:
            parts.append(escape(_("answered by %s", self.answered_user.name)))
        elif self.calling_user and self.direction == "out":
            parts.append(escape(_("by %s", self.calling_user.name)))
        if self.duration:
            parts.append(escape(_("duration %s", self.duration_human)))
        return Markup("<p>%s</p>") % Markup(", ").join(parts)

    def _post_summary(self):
        self.ensure_one()
        if self.summary_posted:
            return
        body = self._summary_html()
        targets = []
        if self.partner:
            targets.append(self.partner)
        if self.ref and self.ref._name != "res.partner" and hasattr(self.ref, "message_post"):
            targets.append(self.ref)
        # Authored by the user who took or made the call, else by OdooBot (not the agent account).
        author = self.answered_user or self.calling_user
        author_id = author.partner_id.id if author else self.env.ref("base.partner_root").id
        for record in targets:
            record.sudo().message_post(body=body, message_type="comment", subtype_xmlid="mail.mt_note",
                                       author_id=author_id)
        self.summary_posted = True

    def _notify_missed(self):
        self.ensure_one()
        pbx_users = self.env["asterisk_plus.user"].sudo().search([
            ("server", "=", self.server.id), ("user", "in", self.called_users.ids), ("missed_calls_notify", "=", True),
        ])
        caller = self.partner.display_name or self.calling_number or _("unknown number")
        activity_type = self.env.ref("mail.mail_activity_data_call", raise_if_not_found=False)
        message = _("Missed call from %s", caller)
        for pbx_user in pbx_users:
            user = pbx_user.user
            self.env["asterisk_plus.settings"].sudo().asterisk_plus_notify(
                message, title=_("Missed call"), notify_uid=user.id, sticky=True, warning=True,
            )
            # An activity on the call: it sits in the user's activity menu until called back.
            self.sudo().with_context(mail_activity_quick_update=True).activity_schedule(
                activity_type_id=activity_type.id if activity_type else False,
                summary=message, user_id=user.id,
                note=_("Call back %s", self.calling_number or ""),
            )

    def _queue_recordings(self):
        """Create the recording rows and fetch the files after commit (§9.7)."""
        self.ensure_one()
        settings = self.env["asterisk_plus.settings"].get_settings()
        data = self.env["asterisk_plus.channel_data"].sudo().search([
            ("call", "=", self.id), ("key", "=", "recording_file_path"),
        ])
        if not data:
            return
        recordings = self.env["asterisk_plus.recording"].sudo()
        for item in data:
            recordings |= recordings._create_from_call(self, item)
        if settings.record_calls and self.duration:
            recordings._fetch_after_commit()

    # ------------------------------------------------------------ handlers
    @api.model
    def _agent_call(self, event):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        linkedid = known(header(event, "Linkedid")) or known(header(event, "Uniqueid"))
        if not linkedid:
            return server, self.browse()
        return server, self.sudo().search([("server", "=", server.id), ("uniqueid", "=", linkedid)], limit=1)

    @api.model
    @agent_event
    def on_user_event_set_answered(self, event):
        server, call = self._agent_call(event)
        if not call:
            return False
        channel = self.env["asterisk_plus.channel"].sudo().search([
            ("server", "=", server.id), ("uniqueid", "=", known(header(event, "Uniqueid")) or ""),
        ], limit=1)
        user = channel.user if channel and not channel.is_primary else self.env["res.users"]
        done = call._set_answered(user, event_datetime(event))
        if done:
            call._notify_reload()
        return done

    @api.model
    @agent_event
    def on_user_event_set_transfer(self, event):
        _server, call = self._agent_call(event)
        if not call:
            return False
        call.is_transfer = True
        call._log_event(_("Transfer"), event_datetime(event))
        return True

    # ------------------------------------------------------------- UI
    def action_open_partner(self):
        self.ensure_one()
        return {"type": "ir.actions.act_window", "res_model": "res.partner", "res_id": self.partner.id, "view_mode": "form"}

    def action_call_back(self):
        self.ensure_one()
        number = self.calling_number if self.direction == "in" else self.called_number
        self.env["asterisk_plus.server"].originate_call(number, "res.partner" if self.partner else None, self.partner.id or None)
        return True

    @api.autovacuum
    def _gc_old_calls(self):
        settings = self.env["asterisk_plus.settings"].get_settings()
        if settings.calls_keep_days > 0:
            limit = fields.Datetime.now() - timedelta(days=settings.calls_keep_days)
            calls = self.sudo().search([("started", "<", limit), ("is_active", "=", False)])
            keep = self.env["asterisk_plus.recording"].sudo().search([("call", "in", calls.ids), ("keep_forever", "=", True)])
            (calls - keep.call).unlink()


class CallEvent(models.Model):
    _name = "asterisk_plus.call_event"
    _description = "Call event"
    _order = "event_time, id"

    call = fields.Many2one("asterisk_plus.call", required=True, ondelete="cascade", index=True)
    event = fields.Text()
    event_time = fields.Datetime()
