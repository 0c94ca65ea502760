import html
import logging

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

_logger = logging.getLogger(__name__)


class Settings(models.Model):
    _name = "asterisk_plus.settings"
    _description = "PBX settings"

    name = fields.Char(default="PBX Settings")
    originate_context = fields.Char(default="from-internal", required=True)
    originate_timeout = fields.Integer(default=60, required=True, help="Seconds the user's phone rings.")
    internal_number_max_length = fields.Integer(default=5, required=True)
    min_external_number_length = fields.Integer(default=6, required=True)
    number_search_operation = fields.Selection(
        [("=", "Exact"), ("like", "Prefix")], default="=", required=True
    )
    number_match_suffix_digits = fields.Integer(default=0, help="0 = off. Last resort: compare the last N digits.")
    auto_create_partners = fields.Boolean()
    record_calls = fields.Boolean()
    recording_storage = fields.Selection([("db", "Database"), ("filestore", "Filestore")], default="filestore")
    use_mp3_encoder = fields.Boolean(default=True)
    mp3_encoder_bitrate = fields.Integer(default=96)
    mp3_encoder_quality = fields.Integer(default=4)
    recording_remove_after_download = fields.Boolean()
    calls_keep_days = fields.Integer(default=365)
    recordings_keep_days = fields.Integer(default=365)
    permit_ip_addresses = fields.Char(help="Comma-separated IPs allowed to call the dialplan endpoints, on top of the token.")
    debug_mode = fields.Boolean()

    @api.model
    def get_settings(self):
        """The singleton, as sudo (settings are read by handlers of every user)."""
        # The xmlid lookup is ormcached; env.ref() would also query exists() on every call.
        res_id = self.env["ir.model.data"]._xmlid_to_res_id("asterisk_plus.settings_default", raise_if_not_found=False)
        if res_id:
            return self.sudo().browse(res_id)
        return self.sudo().search([], limit=1) or self.sudo().create({})

    @api.model
    def get_param(self, name, default=None):
        value = self.get_settings()[name]
        return default if value in (False, None) and default is not None else value

    def write(self, vals):
        res = super().write(vals)
        if "record_calls" in vals:
            mixmon = self.env.ref("asterisk_plus.var_set_mixmon", raise_if_not_found=False)
            if mixmon:
                mixmon.sudo().is_enabled = bool(vals["record_calls"])
        return res

    def action_open_settings(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.get_settings().id,
            "view_mode": "form",
            "target": "current",
        }

    @api.model
    def asterisk_plus_notify(self, message, title="PBX", notify_uid=None, sticky=False, warning=False):
        """Toast to a user (§4.4, §9.6). The agent uses it for job outcomes."""
        user = self.env.user
        is_agent = user.has_group("asterisk_plus.group_asterisk_server")
        if notify_uid and notify_uid != self.env.uid and not (is_agent or self.env.is_superuser()):
            raise AccessError(_("You may only notify yourself."))
        target = self.env["res.users"].sudo().browse(notify_uid or self.env.uid)
        if not target.exists():
            return False
        self.env["bus.bus"].sudo()._sendone(
            target.partner_id,
            "asterisk_plus_notify",
            {
                # The agent already HTML-escapes; the client renders text, never HTML.
                "message": html.unescape(str(message or "")),
                "title": str(title or "PBX"),
                "sticky": bool(sticky),
                "warning": bool(warning),
            },
        )
        return True
