"""Web CLI support (CONTRACT §7): one-time tokens and the audit trail.

Odoo never proxies the console: the browser talks to the agent, and the agent
asks Odoo whether the token it was given is good (fail closed on its side).
"""
import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlparse

from odoo import api, fields, models

from .common import to_utc_datetime

TOKEN_TTL = timedelta(seconds=60)


def _hash(token):
    return hashlib.sha256(str(token).encode()).hexdigest()


class ConsoleToken(models.Model):
    _name = "asterisk_plus.console_token"
    _description = "One-time web console token"

    token_hash = fields.Char(required=True, index=True)
    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade")
    user = fields.Many2one("res.users", required=True, ondelete="cascade")
    expires = fields.Datetime(required=True)

    @api.autovacuum
    def _gc_tokens(self):
        self.sudo().search([("expires", "<", fields.Datetime.now())]).unlink()


class ConsoleAudit(models.Model):
    _name = "asterisk_plus.console_audit"
    _description = "Web console session"
    _order = "started desc, id desc"

    session = fields.Char(index=True)
    server = fields.Many2one("asterisk_plus.server", required=True, ondelete="cascade", index=True)
    user = fields.Many2one("res.users", ondelete="set null")
    login = fields.Char()
    remote_addr = fields.Char()
    started = fields.Datetime()
    ended = fields.Datetime()
    lines = fields.Text()


class Server(models.Model):
    _inherit = "asterisk_plus.server"

    def _console_websocket_url(self):
        self.ensure_one()
        if self.console_url:
            return self.console_url
        host = urlparse(self.agent_url or "").hostname or "localhost"
        if ":" in host:
            host = "[%s]" % host
        return "wss://%s:48001/console" % host

    def console_new_token(self):
        """A one-time token for the current admin (60 s); only its hash is stored."""
        self.ensure_one()
        self._check_admin()
        token = secrets.token_hex(32)
        self.env["asterisk_plus.console_token"].sudo().create({
            "token_hash": _hash(token), "server": self.id, "user": self.env.uid,
            "expires": fields.Datetime.now() + TOKEN_TTL,
        })
        return token

    def action_open_console(self):
        self.ensure_one()
        self._check_admin()
        return {"type": "ir.actions.act_url", "url": "/asterisk_plus/console/%d" % self.id, "target": "new"}

    @api.model
    def console_validate_token(self, token, info=None):
        """Called by the agent (§7.4): consumes the token; `{ok, user_id, login}`."""
        server = self._get_agent_server()
        if not token or not isinstance(token, str):
            return {"ok": False, "error": "invalid"}
        digest = _hash(token)
        self.env.cr.execute(
            "SELECT id, token_hash FROM asterisk_plus_console_token WHERE token_hash = %s FOR UPDATE",
            (digest,),
        )
        row = self.env.cr.fetchone()
        if not row or not hmac.compare_digest(row[1], digest):
            return {"ok": False, "error": "invalid"}
        record = self.env["asterisk_plus.console_token"].sudo().browse(row[0])
        valid = record.server == server and record.expires >= fields.Datetime.now()
        user = record.user
        record.unlink()  # one use, whatever the outcome
        if not valid or not user.active or not user.has_group("asterisk_plus.group_asterisk_admin"):
            return {"ok": False, "error": "invalid"}
        remote = (info or {}).get("remote_addr") if isinstance(info, dict) else None
        self.env["asterisk_plus.console_audit"].sudo().create({
            "server": server.id, "user": user.id, "login": user.login, "remote_addr": remote,
            "started": fields.Datetime.now(), "lines": "",
        })
        return {"ok": True, "user_id": user.id, "login": user.login}

    @api.model
    def console_audit(self, entries):
        """Session and line records pushed by the agent (§7)."""
        server = self._get_agent_server()
        Audit = self.env["asterisk_plus.console_audit"].sudo()
        if isinstance(entries, dict):
            entries = [entries]
        stored = 0
        for entry in entries or []:
            if not isinstance(entry, dict):
                continue
            session = str(entry.get("session") or "")
            audit = Audit.search([("server", "=", server.id), ("session", "=", session)], limit=1) if session else Audit
            if not audit:
                login = entry.get("login") or ""
                user = self.env["res.users"].sudo().search([("login", "=", login)], limit=1) if login else False
                audit = Audit.create({
                    "server": server.id, "session": session or False, "login": login,
                    "user": user.id if user else False, "remote_addr": entry.get("remote_addr") or False,
                    "started": to_utc_datetime(entry.get("started")) or fields.Datetime.now(), "lines": "",
                })
            vals = {}
            lines = entry.get("lines") or ([entry["line"]] if entry.get("line") is not None else [])
            if isinstance(lines, str):
                lines = [lines]
            if lines:
                prefix = "[rejected] " if entry.get("rejected") else ""
                new = "\n".join(prefix + str(line).replace("\n", " ") for line in lines)
                vals["lines"] = (audit.lines + "\n" + new) if audit.lines else new
            if entry.get("ended"):
                vals["ended"] = to_utc_datetime(entry["ended"])
            if vals:
                audit.write(vals)
            stored += 1
        return {"stored": stored}
