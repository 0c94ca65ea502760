from odoo import api, fields, models

# §9.2 and §6: defaults the agent may override locally.
DEFAULT_OPTIONS = {
    "fagi_enabled": "yes",
    "fagi_listen": "127.0.0.1",
    "fagi_port": "44574",
    "security_enabled": "no",
    "security_maxretry": "5",
    "security_findtime": "600",
    "security_banned_timeout": "3600",
    "security_recidive_factor": "2",
    "security_max_banned_timeout": "604800",
    "security_trusted_maxretry": "20",
    "security_authenticated_timeout": "604800",
    "security_challenge_timeout": "0",
    "security_ignore_private": "yes",
    "security_ipv6_prefix": "128",
    "asterisk_monitor_dir": "/var/spool/asterisk/monitor/",
    "asterisk_sounds_dir": "/var/lib/asterisk/sounds/",
}


class AgentOption(models.Model):
    _name = "asterisk_plus.agent_option"
    _description = "Agent option"
    _order = "key"

    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade")
    key = fields.Char(required=True)
    value = fields.Char(help="String; the agent parses it (yes/no/true/false/on/off/1/0).")

    _sql_constraints = [("server_key_uniq", "unique(server, key)", "This option is already set for the server.")]

    @api.model
    def _create_defaults(self, server):
        existing = set(server.agent_options.mapped("key"))
        self.sudo().create([
            {"server": server.id, "key": key, "value": value}
            for key, value in DEFAULT_OPTIONS.items() if key not in existing
        ])

    @api.model_create_multi
    def create(self, vals_list):
        recs = super().create(vals_list)
        recs.server.filtered("agent_initialized")._reload_config_after_commit()
        return recs

    def write(self, vals):
        res = super().write(vals)
        self.server.filtered("agent_initialized")._reload_config_after_commit()
        return res

    def unlink(self):
        servers = self.server.filtered("agent_initialized")
        res = super().unlink()
        servers._reload_config_after_commit()
        return res
