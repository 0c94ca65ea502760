import ipaddress
import logging

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .common import to_utc_datetime

_logger = logging.getLogger(__name__)


def _parse_address(value):
    value = (value or "").strip().strip("[]")
    return ipaddress.ip_network(value, strict=False)


class AccessList(models.Model):
    _name = "asterisk_plus.access_list"
    _description = "PBX access list entry"
    _order = "access_type, address"

    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade")
    address = fields.Char(required=True, help="IP address or CIDR")
    access_type = fields.Selection([("allow", "Allow"), ("deny", "Deny")], required=True, default="allow")
    comment = fields.Char()
    is_enabled = fields.Boolean(default=True)

    @api.constrains("address")
    def _check_address(self):
        for rec in self:
            try:
                _parse_address(rec.address)
            except ValueError as e:
                raise ValidationError(_("Not an IP address or network: %s", rec.address)) from e

    def _agent_rules(self):
        return [
            {"address": str(_parse_address(r.address)), "access_type": r.access_type, "comment": r.comment or ""}
            for r in self if r.is_enabled
        ]

    def _push(self, servers):
        for server in servers.filtered("agent_initialized"):
            server._job_after_commit("security.set_access_lists", [server.access_lists._agent_rules()])

    @api.model_create_multi
    def create(self, vals_list):
        recs = super().create(vals_list)
        self._push(recs.server)
        return recs

    def write(self, vals):
        servers = self.server
        res = super().write(vals)
        self._push(servers | self.server)
        return res

    def unlink(self):
        servers = self.server
        res = super().unlink()
        self._push(servers)
        return res


class AccessBan(models.Model):
    _name = "asterisk_plus.access_ban"
    _description = "Banned address (cache of the agent's bans)"
    _order = "expires_at desc"

    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade", index=True)
    address = fields.Char(required=True, index=True)
    expires_at = fields.Datetime()
    reason = fields.Char()
    offences = fields.Integer(default=1)
    service = fields.Char()
    account_id = fields.Char()

    _sql_constraints = [("server_address_uniq", "unique(server, address)", "This address is already banned.")]

    @api.model
    def agent_ban_update(self, updates):
        """Bans, unbans and expiries pushed by the agent (§6.4)."""
        server = self.env["asterisk_plus.server"]._get_agent_server()
        if isinstance(updates, dict):
            updates = [updates]
        Ban = self.sudo()
        done = 0
        for item in updates or []:
            if not isinstance(item, dict) or not item.get("address"):
                continue
            address = str(item["address"])
            ban = Ban.search([("server", "=", server.id), ("address", "=", address)], limit=1)
            action = item.get("action") or "ban"
            if action in ("unban", "expire", "expired", "remove"):
                ban.unlink()
            else:
                vals = {
                    "server": server.id, "address": address,
                    "expires_at": to_utc_datetime(item.get("expires_at")),
                    "reason": item.get("reason") or "",
                    "service": item.get("service") or "",
                    "account_id": item.get("account_id") or "",
                }
                if item.get("offences"):
                    vals["offences"] = int(item["offences"])
                if ban:
                    ban.write(vals)
                else:
                    Ban.create(vals)
            done += 1
        return {"updated": done}

    @api.model
    def reload_bans_response(self, result, server_id=None, **pass_back):
        """Callback of `security.list_bans`: replace the cache."""
        server = self.env["asterisk_plus.server"]._get_agent_server()
        if not isinstance(result, list):
            return False
        Ban = self.sudo()
        Ban.search([("server", "=", server.id)]).unlink()
        now = fields.Datetime.now()
        vals_list = []
        for item in result:
            if not isinstance(item, dict) or not item.get("address"):
                continue
            expires = item.get("expires_in")
            vals_list.append({
                "server": server.id, "address": str(item["address"]), "reason": item.get("reason") or "",
                "offences": int(item.get("offences") or 1),
                "expires_at": fields.Datetime.add(now, seconds=int(expires)) if expires else False,
            })
        Ban.create(vals_list)
        return {"bans": len(vals_list)}

    def action_refresh(self):
        servers = self.server or self.env["asterisk_plus.server"].search([("agent_initialized", "=", True)])
        for server in servers:
            server.local_job("security.list_bans", res_model=self._name, res_method="reload_bans_response",
                             pass_back={"server_id": server.id})
        return True

    def action_unban(self):
        for server in self.server:
            bans = self.filtered(lambda b: b.server == server)
            server.local_job("security.unban", args=[bans.mapped("address")])
        self.unlink()
        return True

    def action_allow(self):
        for ban in self:
            self.env["asterisk_plus.access_list"].create({
                "server": ban.server.id, "address": ban.address, "access_type": "allow",
                "comment": _("Allowed from ban: %s", ban.reason or ""),
            })
        return self.action_unban()
