import re

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, ValidationError

from .common import clean_number, strip_channel_suffix

USER_PREFERENCES = {"open_reference", "call_popup_is_enabled", "call_popup_is_sticky", "missed_calls_notify"}
_VAR_LINE = re.compile(r"^[A-Za-z0-9_()\-,]+=.*$")


class AsteriskUser(models.Model):
    _name = "asterisk_plus.user"
    _description = "PBX user"
    _order = "exten"
    _rec_name = "exten"

    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade")
    user = fields.Many2one("res.users", required=True, ondelete="cascade", domain=[("share", "=", False)])
    name = fields.Char(related="user.name")
    exten = fields.Char(required=True, string="Extension")
    channels = fields.One2many("asterisk_plus.user_channel", "asterisk_user")
    originate_vars = fields.Text(help="One VAR=value per line, added to every Originate.")
    open_reference = fields.Boolean(help="Open the caller's record when a call rings.")
    call_popup_is_enabled = fields.Boolean(default=True, string="Incoming call popup")
    call_popup_is_sticky = fields.Boolean(string="Popup stays until closed")
    missed_calls_notify = fields.Boolean(default=True)
    dial_timeout = fields.Integer(default=30)
    did_number = fields.Char(string="DID number")
    record_calls = fields.Boolean()

    _sql_constraints = [
        ("user_server_uniq", "unique(\"user\", server)", "This Odoo user already has a PBX user on this server."),
        ("exten_server_uniq", "unique(exten, server)", "This extension is already used on this server."),
    ]

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("did_number"):
                vals["did_number"] = clean_number(vals["did_number"])
        return super().create(vals_list)

    def write(self, vals):
        if not (self.env.su or self.env.user.has_group("asterisk_plus.group_asterisk_supervisor")):
            # A user may tune their own notifications, not their extension or phones.
            forbidden = set(vals) - USER_PREFERENCES
            if forbidden:
                raise AccessError(_("Only supervisors can change: %s", ", ".join(sorted(forbidden))))
        if vals.get("did_number"):
            vals["did_number"] = clean_number(vals["did_number"])
        return super().write(vals)

    @api.constrains("originate_vars")
    def _check_vars(self):
        for rec in self:
            for line in (rec.originate_vars or "").splitlines():
                if line.strip() and not _VAR_LINE.match(line.strip()):
                    raise ValidationError(_("Originate variables must be VAR=value, one per line: %s", line))

    def _originate_variables(self):
        self.ensure_one()
        return [line.strip() for line in (self.originate_vars or "").splitlines() if line.strip()]

    def _display_name_for_call(self):
        return "%s (%s)" % (self.user.name, self.exten)

    @api.model
    def fagi_request(self, request):
        """FastAGI `route_did`: ring the PBX user owning the DID (§8)."""
        server = self.env["asterisk_plus.server"]._get_agent_server()
        did = clean_number(request.get("agi_arg_1") or request.get("agi_extension") or request.get("agi_dnid"))
        if not did:
            return []
        user = self.sudo().search([("server", "=", server.id), ("did_number", "=", did)], limit=1)
        if not user:
            return []
        commands = []
        settings = self.env["asterisk_plus.settings"].get_settings()
        if user.record_calls or settings.record_calls:
            uid = request.get("agi_uniqueid") or "call"
            commands.append("EXEC MixMonitor %s.wav,b" % re.sub(r"[^A-Za-z0-9._-]", "", uid))
        pjsip = [c.name.split("/", 1)[1] for c in user.channels if c.name.upper().startswith("PJSIP/")]
        others = [c.name for c in user.channels if not c.name.upper().startswith("PJSIP/")]
        if pjsip:
            commands.append("PJSIP_DIAL_CONTACTS %s %s,t" % (",".join(pjsip), user.dial_timeout))
        if others:
            commands.append('EXEC Dial "%s,%s,t"' % ("&".join(others), user.dial_timeout))
        return commands


class UserChannel(models.Model):
    _name = "asterisk_plus.user_channel"
    _description = "PBX user channel"
    _order = "sequence, id"

    name = fields.Char(required=True, string="Channel", help="PJSIP/101 or Local/100@internal")
    asterisk_user = fields.Many2one("asterisk_plus.user", required=True, ondelete="cascade")
    server = fields.Many2one(related="asterisk_user.server", store=True, index=True)
    user = fields.Many2one(related="asterisk_user.user", store=True, index=True)
    sequence = fields.Integer(default=10)
    originate_enabled = fields.Boolean(default=True)
    originate_context = fields.Char(help="Dialplan context for calls from Odoo; empty uses the settings.")
    auto_answer_header = fields.Char(
        default="Call-Info: answer-after=0",
        help="SIP header that makes the phone answer Odoo's call by itself. Empty: none.",
    )

    _sql_constraints = [("name_server_uniq", "unique(name, server)", "This channel is already used on this server.")]

    @api.constrains("name")
    def _check_name(self):
        for rec in self:
            if rec.name.count("/") != 1 or re.search(r"\s", rec.name) or rec.name.startswith("/") or rec.name.endswith("/"):
                raise ValidationError(_("A channel looks like PJSIP/101: exactly one / and no spaces."))

    @api.model
    def get_user_channel(self, channel, server):
        """The PBX user channel a live channel name belongs to, or an empty recordset."""
        name = strip_channel_suffix(channel or "")
        if not name:
            return self.browse()
        server_id = server.id if hasattr(server, "id") else server
        return self.sudo().search([("name", "=", name), ("server", "=", server_id)], limit=1)

    def _originate_action(self, exten, call_uid, other_uid, record_name, settings, dtmf=None):
        """The AMI Originate for this channel (§9.3)."""
        self.ensure_one()
        pbx_user = self.asterisk_user
        variables = [
            "__REALCALLERIDNUM=%s" % pbx_user.exten,
            "__CALLERIDNUMINTERNAL=%s" % pbx_user.exten,
        ]
        variables += pbx_user._originate_variables()
        if self.auto_answer_header and ":" in self.auto_answer_header:
            name, value = (part.strip() for part in self.auto_answer_header.split(":", 1))
            if self.name.upper().startswith("PJSIP/"):
                variables.append("PJSIP_HEADER(add,%s)=%s" % (name, value))
            else:
                variables.append("SIPADDHEADER=%s: %s" % (name, value))
        if dtmf:
            digits = re.sub(r"[^0-9*#wW]", "", dtmf)
            if digits:
                variables.append("__dtmf_digits=%s" % digits)
                variables.append("__dtmf_delay=%s" % 2)
        caller_name = (record_name or exten).replace('"', "").replace("\n", " ").replace("\r", " ")[:64]
        return {
            "Action": "Originate",
            "Channel": self.name,
            "Context": self.originate_context or settings.originate_context,
            "Exten": exten,
            "Priority": 1,
            "Timeout": int(settings.originate_timeout) * 1000,
            "Async": "true",
            "EarlyMedia": "true",
            "CallerID": '"To: %s" <%s>' % (caller_name, exten),
            "ChannelId": call_uid,
            "OtherChannelId": other_uid,
            "Variable": variables,
        }
