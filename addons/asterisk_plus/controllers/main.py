import ipaddress
import json
import logging
import threading
import time
from contextlib import contextmanager

from odoo import SUPERUSER_ID, api, http
from odoo.http import request
from odoo.service import db as db_service

from ..models.common import clean_number

_logger = logging.getLogger(__name__)

TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
HANDSHAKE_MAX_ATTEMPTS = 10  # per source IP and minute
_attempts = {}
_attempts_lock = threading.Lock()


class Forbidden(Exception):
    pass


class NotFound(Exception):
    pass


def _too_many_attempts(remote_addr):
    now = time.monotonic()
    with _attempts_lock:
        recent = [t for t in _attempts.get(remote_addr, []) if now - t < 60]
        recent.append(now)
        _attempts[remote_addr] = recent
        if len(_attempts) > 10000:  # bound memory under a scan
            _attempts.clear()
        return len(recent) > HANDSHAKE_MAX_ATTEMPTS


@contextmanager
def _db_env(db):
    """A superuser environment on the request's db, or on `db=` when the
    module is loaded server-wide (multi-db without a db filter)."""
    if request.db and (not db or db == request.db):
        if "asterisk_plus.server" not in request.env:
            raise NotFound()
        yield request.env(user=SUPERUSER_ID, su=True)
        return
    if not db or db not in db_service.list_dbs(force=True) or not http.db_filter([db]):
        raise NotFound()
    from odoo.modules.registry import Registry
    registry = Registry(db)
    if "asterisk_plus.server" not in registry:
        raise NotFound()
    with registry.cursor() as cr:
        yield api.Environment(cr, SUPERUSER_ID, {})


def _json(status, body):
    return request.make_response(
        json.dumps(body), status=status,
        headers=[("Content-Type", "application/json"), ("Cache-Control", "no-store")],
    )


def _text(body, status=200):
    return request.make_response(body or "", status=status, headers=TEXT)


class AsteriskPlusController(http.Controller):

    # ---------------------------------------------------------- handshake
    @http.route("/asterisk_plus/agent", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def agent_handshake(self, db=None, server_id=None, system_name=None, agent_url=None, cert_sha256=None,
                        version=None, **kwargs):
        remote_addr = request.httprequest.remote_addr
        if _too_many_attempts(remote_addr):
            return _json(429, {"error": "too_many_attempts"})
        try:
            with _db_env(db) as env:
                Server = env["asterisk_plus.server"]
                if server_id:
                    try:
                        server = Server.browse(int(server_id)).exists()
                    except ValueError:
                        server = Server.browse()
                else:
                    server = Server.search([("permit_agent_initialization", "=", True)])
                    if not server:
                        server = Server.search([])
                    if len(server) > 1:
                        return _json(404, {"error": "server_id_required"})
                if not server:
                    return _json(404, {"error": "unknown_server"})
                status, body = server._agent_handshake(
                    remote_addr=remote_addr, agent_url=agent_url, cert_sha256=cert_sha256,
                    system_name=system_name, version=version,
                )
                _logger.info("asterisk_plus: agent handshake for server %s from %s: %s", server.id, remote_addr, status)
                return _json(status, body)
        except NotFound:
            return _json(404, {"error": "unknown_db"})

    # -------------------------------------------------- dialplan endpoints
    def _dialplan(self, db, handler):
        """Token check (constant time, fail closed), optional IP allow-list, then `handler(env, server)`."""
        headers = request.httprequest.headers
        token = headers.get("x-security-token") or request.httprequest.args.get("token")
        try:
            with _db_env(db) as env:
                server = env["asterisk_plus.server"]._check_security_token(token)
                # Empty bodies: CURL() hands any body to the dialplan, so a refusal must not
                # become a caller name there.
                if not server:
                    return _text("", 403)
                permit = env["asterisk_plus.settings"].get_settings().permit_ip_addresses
                if permit and not self._ip_permitted(request.httprequest.remote_addr, permit):
                    return _text("", 403)
                return handler(env, server)
        except NotFound:
            return _text("", 404)

    @staticmethod
    def _ip_permitted(remote_addr, permit):
        try:
            addr = ipaddress.ip_address(remote_addr)
        except ValueError:
            return False
        for item in permit.replace(";", ",").split(","):
            item = item.strip()
            if not item:
                continue
            try:
                if addr in ipaddress.ip_network(item, strict=False):
                    return True
            except ValueError:
                continue
        return False

    @staticmethod
    def _partner(env, server, number, country=None):
        found = env["res.partner"].get_partner_by_number(number or "", country or server.country_id.code or None)
        return env["res.partner"].browse(found["id"]) if found.get("id") else env["res.partner"]

    @http.route("/asterisk_plus/get_caller_name", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def get_caller_name(self, number=None, country=None, db=None, **kwargs):
        def handler(env, server):
            partner = self._partner(env, server, number, country)
            return _text(partner.display_name if partner else "")
        return self._dialplan(db, handler)

    @http.route("/asterisk_plus/get_partner_manager", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def get_partner_manager(self, number=None, exten=None, db=None, **kwargs):
        def handler(env, server):
            partner = self._partner(env, server, number)
            salesperson = partner.user_id or partner.commercial_partner_id.user_id if partner else None
            if not salesperson:
                return _text("")
            pbx_user = env["asterisk_plus.user"].search([("server", "=", server.id), ("user", "=", salesperson.id)], limit=1)
            if not pbx_user:
                return _text("")
            if exten and exten not in ("0", "false", "no"):
                return _text(pbx_user.exten)
            return _text("&".join(pbx_user.channels.filtered("originate_enabled").mapped("name")))
        return self._dialplan(db, handler)

    @http.route("/asterisk_plus/get_caller_tags", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def get_caller_tags(self, number=None, db=None, **kwargs):
        def handler(env, server):
            partner = self._partner(env, server, number)
            return _text(",".join(partner.category_id.mapped("name")) if partner else "")
        return self._dialplan(db, handler)

    @http.route("/asterisk_plus/get_user_data_by_did", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def get_user_data_by_did(self, did=None, db=None, **kwargs):
        def handler(env, server):
            did_number = clean_number(did)
            pbx_user = env["asterisk_plus.user"].search([("server", "=", server.id), ("did_number", "=", did_number)], limit=1) if did_number else None
            if not pbx_user:
                return _json(200, {})
            return _json(200, {
                "mobile": pbx_user.user.partner_id.mobile or "",
                "dialstring": "&".join(pbx_user.channels.mapped("name")),
            })
        return self._dialplan(db, handler)

    @http.route("/asterisk_plus/get_outbound_callerid_by_channel", type="http", auth="none", methods=["GET"], csrf=False, save_session=False)
    def get_outbound_callerid_by_channel(self, channel=None, db=None, **kwargs):
        def handler(env, server):
            user_channel = env["asterisk_plus.user_channel"].get_user_channel(channel or "", server)
            if not user_channel:
                return _text("")
            pbx_user = user_channel.asterisk_user
            number = pbx_user.did_number or pbx_user.user.partner_id.phone
            if not number:
                return _text("")
            code = pbx_user.user.partner_id.country_id.code or server.country_id.code or None
            return _text(env["res.partner"]._asterisk_format_e164(number, code) or "")
        return self._dialplan(db, handler)


class AsteriskPlusConsole(http.Controller):

    @http.route("/asterisk_plus/console/<int:server_id>", type="http", auth="user", methods=["GET"])
    def console(self, server_id, **kwargs):
        server = request.env["asterisk_plus.server"].browse(server_id).exists()
        if not server:
            return request.not_found()
        token = server.console_new_token()  # AccessError for non-admins
        response = request.render("asterisk_plus.console_page", {
            "server": server, "token": token, "ws_url": server._console_websocket_url(),
        })
        response.headers["Cache-Control"] = "no-store"
        return response
