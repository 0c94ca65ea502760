import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import uuid
import warnings
from datetime import timedelta
from urllib.parse import urlparse

import psycopg2
import requests
import urllib3
from requests.adapters import HTTPAdapter

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from .common import agent_event, clean_number, event_datetime, header

_logger = logging.getLogger(__name__)

AGENT_JOB_PATH = "/app/asterisk_plus/agent"
AGENT_HTTP_TIMEOUT = 6  # seconds (§4.3)
INIT_WINDOW = timedelta(hours=1)
AGENT_API_VERSION = 1
USER_AGENT = "odoo-asterisk_plus/17.0"
DIALABLE = re.compile(r"^\+?[0-9A-Za-z*#]+$")  # also keeps CR/LF out of the AMI action


class FingerprintAdapter(HTTPAdapter):
    """Pins the agent's certificate by its SHA-256 during the TLS handshake.

    urllib3 checks `assert_fingerprint` right after the handshake, before the
    request body (which carries the token) is written.
    """

    def __init__(self, fingerprint, **kwargs):
        self._fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["assert_fingerprint"] = self._fingerprint
        return super().init_poolmanager(*args, **kwargs)


def _random_token():
    return secrets.token_hex(32)


def _normalize_fingerprint(value):
    value = (value or "").replace(":", "").replace(" ", "").strip().lower()
    return value


class Server(models.Model):
    _name = "asterisk_plus.server"
    _inherit = ["mail.thread"]
    _description = "Asterisk server"

    name = fields.Char(required=True, tracking=True)
    user = fields.Many2one(
        "res.users", string="Agent user", ondelete="restrict", copy=False,
        help="Non-interactive Odoo user the agent logs in as.",
    )
    tz = fields.Selection(related="user.tz", readonly=False)
    country_id = fields.Many2one(related="user.country_id", readonly=False, string="Country")
    agent_url = fields.Char(default="https://localhost:48000", required=True, tracking=True)
    agent_token = fields.Char(groups="asterisk_plus.group_asterisk_admin", copy=False)
    agent_tls_mode = fields.Selection(
        [("fingerprint", "Pin certificate fingerprint"), ("ca", "Verify with CA"), ("insecure", "Insecure (no verification)")],
        default="fingerprint", required=True, tracking=True,
    )
    agent_cert_sha256 = fields.Char(string="Agent certificate SHA-256", copy=False, tracking=True)
    agent_initialized = fields.Boolean(copy=False, readonly=True, tracking=True)
    permit_agent_initialization = fields.Boolean(copy=False, readonly=True)
    permit_agent_initialization_until = fields.Datetime(copy=False, readonly=True)
    security_token = fields.Char(
        default=lambda self: _random_token(), copy=False, groups="asterisk_plus.group_asterisk_admin",
        help="Token the dialplan sends to the /asterisk_plus/get_* endpoints.",
    )
    console_url = fields.Char()
    agent_options = fields.One2many("asterisk_plus.agent_option", "server")
    access_lists = fields.One2many("asterisk_plus.access_list", "server")
    agent_version = fields.Char(readonly=True)
    agent_last_seen = fields.Datetime(readonly=True)
    system_name = fields.Char(readonly=True)

    _sql_constraints = [
        ("user_uniq", "unique(\"user\")", "This user is already the agent of another server."),
    ]

    # ---------------------------------------------------------------- create
    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if not vals.get("user"):
                vals["user"] = self._create_agent_user(vals.get("name") or "Asterisk").id
        servers = super().create(vals_list)
        for server in servers:
            server.agent_options._create_defaults(server)
        return servers

    @api.model
    def _create_agent_user(self, name):
        group = self.env.ref("asterisk_plus.group_asterisk_server")
        login = "asterisk_agent_%s" % uuid.uuid4().hex[:8]
        return self.env["res.users"].sudo().with_context(no_reset_password=True).create({
            "name": "%s agent" % name,
            "login": login,
            "groups_id": [(6, 0, [group.id])],
            "password": _random_token(),
        })

    # ------------------------------------------------------- agent binding
    @api.model
    def _get_agent_server(self):
        """The server whose agent user is calling; AccessError otherwise."""
        server = self.sudo().search([("user", "=", self.env.uid)], limit=1)
        if not server:
            raise AccessError(_("Only a server's agent user can call this method."))
        return server

    # ------------------------------------------------------------ jobs
    def _agent_session(self):
        self.ensure_one()
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        url = urlparse(self.agent_url or "")
        if url.scheme == "http":
            host = url.hostname or ""
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise UserError(_("Plain HTTP to the agent is only allowed on loopback. Use https://."))
            return session, True
        if url.scheme != "https":
            raise UserError(_("The agent URL must start with https://."))
        if self.agent_tls_mode == "fingerprint":
            fingerprint = _normalize_fingerprint(self.agent_cert_sha256)
            if len(fingerprint) != 64:
                raise UserError(_("The agent certificate fingerprint is not set; run the agent's init or switch the TLS mode."))
            session.mount("https://", FingerprintAdapter(fingerprint))
            return session, False  # chain not verified: the pin is the trust anchor
        if self.agent_tls_mode == "insecure":
            _logger.warning("asterisk_plus: TLS verification to agent %s is disabled (server %s)", self.agent_url, self.id)
            return session, False
        return session, True

    def _build_job(self, fun, args=None, kwargs=None, res_model=None, res_method=None, pass_back=None,
                   res_notify_uid=None, res_notify_title=None, timeout=None, sync=False, job_id=None):
        if bool(res_model) != bool(res_method):
            raise ValidationError(_("A callback needs both res_model and res_method."))
        job = {
            "fun": fun,
            "args": list(args) if isinstance(args, (list, tuple)) else ([] if args is None else [args]),
            "kwargs": kwargs or {},
            "job_id": job_id or str(uuid.uuid4()),
        }
        if res_model:
            job.update(res_model=res_model, res_method=res_method, pass_back=pass_back or {})
        if res_notify_uid:
            job["res_notify_uid"] = res_notify_uid
            job["res_notify_title"] = res_notify_title or "PBX"
        if timeout:
            job["timeout"] = timeout
        if sync:
            job["sync"] = True
        return job

    def local_job(self, fun, args=None, kwargs=None, res_model=None, res_method=None, pass_back=None,
                  res_notify_uid=None, res_notify_title=None, timeout=None, sync=False, job_id=None):
        """Send one job to the agent (§4). Returns the agent's JSON reply."""
        self.ensure_one()
        job = self._build_job(fun, args=args, kwargs=kwargs, res_model=res_model, res_method=res_method,
                              pass_back=pass_back, res_notify_uid=res_notify_uid,
                              res_notify_title=res_notify_title, timeout=timeout, sync=sync, job_id=job_id)
        return self._post_job(job)

    def _post_job(self, job):
        self.ensure_one()
        server = self.sudo()
        if not server.agent_token:
            raise UserError(_("Server %s has no agent token yet: initialise the agent first.", server.name))
        session, verify = server._agent_session()
        url = server.agent_url.rstrip("/") + AGENT_JOB_PATH
        try:
            with warnings.catch_warnings():
                # verify=False is deliberate in fingerprint mode (the pin is the check)
                # and in insecure mode (logged above); urllib3 would warn on every call.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                resp = session.post(
                    url, data=json.dumps(job), verify=verify, timeout=AGENT_HTTP_TIMEOUT, allow_redirects=False,
                    headers={"x-token": server.agent_token, "Content-Type": "application/json"},
                )
        except requests.exceptions.SSLError as e:
            raise UserError(_("TLS check of the agent at %s failed: %s", server.agent_url, e)) from e
        except requests.exceptions.RequestException as e:
            raise UserError(_("Cannot reach the agent at %s: %s", server.agent_url, e)) from e
        finally:
            session.close()
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not 200 <= resp.status_code < 300:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise UserError(_("Agent refused the job %s (HTTP %s): %s", job.get("fun"), resp.status_code, message or resp.reason))
        return body

    def ami_action(self, action, res_model=None, res_method=None, pass_back=None, notify_uid=None, **kwargs):
        self.ensure_one()
        return self.local_job("asterisk.manager_action", args=[action], kwargs=kwargs, res_model=res_model,
                              res_method=res_method, pass_back=pass_back, res_notify_uid=notify_uid)

    def _reload_config_after_commit(self):
        """Queue `agent.reload_config` once the current transaction commits."""
        self._job_after_commit("agent.reload_config")

    def _job_after_commit(self, fun, args=None, **kwargs):
        """Send a job after commit, so the agent never acts on rolled-back data.

        Failures are logged only: the agent refreshes its config every 300 s.
        """
        ids = self.ids
        if not ids:
            return
        dbname = self.env.cr.dbname

        def send():
            from odoo.modules.registry import Registry
            with Registry(dbname).cursor() as cr:
                env = api.Environment(cr, api.SUPERUSER_ID, {})
                for server in env["asterisk_plus.server"].browse(ids).exists():
                    try:
                        server.local_job(fun, args=args, **kwargs)
                    except Exception as e:
                        _logger.info("asterisk_plus: job %s to %s not sent: %s", fun, server.name, e)

        self.env.cr.postcommit.add(send)

    # --------------------------------------------------------- buttons
    def _check_admin(self):
        if not (self.env.is_superuser() or self.env.user.has_group("asterisk_plus.group_asterisk_admin")):
            raise AccessError(_("Only PBX administrators can do this."))

    def ping_agent(self):
        self.ensure_one()
        self._check_admin()
        reply = self.local_job("test.ping", sync=True)
        ok = isinstance(reply, dict) and reply.get("status") in ("done", "accepted")
        return self._notification(_("Agent answered: %s", json.dumps(reply.get("result", reply.get("status")))) if ok else _("Unexpected reply: %s", reply), warning=not ok)

    def reload_config(self):
        self.ensure_one()
        self._check_admin()
        self.local_job("agent.reload_config", res_notify_uid=self.env.uid, res_notify_title=_("Reload config"))
        return self._notification(_("Reload requested."))

    def _notification(self, message, warning=False):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": _("PBX"), "message": message, "type": "danger" if warning else "success", "sticky": False},
        }

    def allow_agent_initialization(self):
        self._check_admin()
        for server in self:
            server.write({
                "permit_agent_initialization": True,
                "permit_agent_initialization_until": fields.Datetime.now() + INIT_WINDOW,
            })
            server.message_post(body=_("Agent initialization allowed for one hour by %s.", self.env.user.name))
        return True

    def reset_agent(self):
        self._check_admin()
        for server in self:
            server.sudo().write({
                "agent_initialized": False,
                "agent_token": False,
                "permit_agent_initialization": True,
                "permit_agent_initialization_until": fields.Datetime.now() + INIT_WINDOW,
            })
            server.message_post(body=_("Agent reset by %s: token invalidated, initialization allowed for one hour.", self.env.user.name))
        return True

    def regenerate_security_token(self):
        self._check_admin()
        for server in self:
            server.sudo().security_token = _random_token()
        return True

    # ------------------------------------------------------- handshake
    def _agent_handshake(self, remote_addr=None, agent_url=None, cert_sha256=None, system_name=None, version=None):
        """One-time init (§5). Returns (http_status, body)."""
        self.ensure_one()
        cr = self.env.cr
        try:
            with cr.savepoint(flush=False):
                cr.execute("SELECT id FROM asterisk_plus_server WHERE id = %s FOR UPDATE NOWAIT", (self.id,))
        except psycopg2.errors.LockNotAvailable:
            return 429, {"error": "busy"}
        server = self.sudo()
        server.invalidate_recordset()
        if server.agent_initialized:
            return 403, {"error": "already_initialized"}
        until = server.permit_agent_initialization_until
        if not server.permit_agent_initialization or (until and until < fields.Datetime.now()):
            return 403, {"error": "not_permitted"}
        password = _random_token()
        server.user.sudo().write({"password": password, "active": True})
        vals = {
            "agent_token": _random_token(),
            "agent_initialized": True,
            "permit_agent_initialization": False,
            "permit_agent_initialization_until": False,
        }
        if agent_url:
            parsed = urlparse(agent_url)
            if parsed.scheme in ("http", "https") and parsed.hostname:
                vals["agent_url"] = agent_url
        fingerprint = _normalize_fingerprint(cert_sha256)
        if fingerprint and len(fingerprint) == 64 and all(c in "0123456789abcdef" for c in fingerprint):
            vals["agent_cert_sha256"] = fingerprint
            vals["agent_tls_mode"] = "fingerprint"
        if system_name:
            vals["system_name"] = system_name[:128]
        if version:
            vals["agent_version"] = version[:64]
        server.write(vals)
        server.message_post(body=_("Agent initialized from %s.", remote_addr or _("unknown address")))
        return 200, {
            "agent_token": server.agent_token,
            "odoo_user": server.user.login,
            "odoo_password": password,
            "odoo_db": self.env.cr.dbname,
            "server_id": server.id,
        }

    # -------------------------------------------------- agent-side API
    @api.model
    def agent_get_config(self):
        """Events map, options and access lists for the calling agent (§3.2)."""
        server = self._get_agent_server()
        server.agent_last_seen = fields.Datetime.now()
        return {
            "api_version": AGENT_API_VERSION,
            "server_id": server.id,
            "system_name": server.system_name or server.name,
            "events_map": self.env["asterisk_plus.event"]._agent_rows(),
            "options": {o.key: o.value or "" for o in server.agent_options},
            "access_lists": server.access_lists._agent_rules(),
            "notify_method": "asterisk_plus_notify",
        }

    @api.model
    @agent_event
    def on_fully_booted(self, event):
        """Asterisk (re)started or the agent (re)connected: close what died with a restart."""
        server = self._get_agent_server()
        vals = {"agent_last_seen": fields.Datetime.now()}
        system_name = header(event, "SystemName")
        if system_name:
            vals["system_name"] = system_name
        server.write(vals)
        try:
            uptime = float(header(event, "Uptime"))
        except (TypeError, ValueError):
            return {"closed": 0}
        boot_time = event_datetime(event) - timedelta(seconds=uptime)
        stale = self.env["asterisk_plus.channel"].sudo().search([
            ("server", "=", server.id), ("is_active", "=", True), ("event_time", "<", boot_time),
        ])
        stale._close_missed(event_datetime(event), _("Asterisk restarted"))
        return {"closed": len(stale)}

    # ----------------------------------------------------- click-to-dial
    @api.model
    def originate_call(self, number, model=None, res_id=None):
        """Ring the current user's phones and dial `number` (§9.3)."""
        if not self.env.user.has_group("asterisk_plus.group_asterisk_user"):
            raise AccessError(_("You are not a PBX user."))
        exten = clean_number(number)
        if not exten or not DIALABLE.match(exten):
            raise UserError(_("Nothing to dial: %s", number))
        pbx_users = self.env["asterisk_plus.user"].sudo().search([("user", "=", self.env.uid)])
        channels = pbx_users.channels.filtered("originate_enabled")
        if not channels:
            raise UserError(_("You have no PBX channel enabled for calls. Ask your admin to configure your PBX user."))
        record = self._originate_record(model, res_id)
        settings = self.env["asterisk_plus.settings"].get_settings()
        partner = self.env["res.partner"]
        if record is not None:
            if record._name == "res.partner":
                partner = record
            elif "partner_id" in record._fields and record._fields["partner_id"].comodel_name == "res.partner":
                partner = record.partner_id
        partner = partner.sudo()
        dtmf = partner.phone_extension if partner else False
        country = partner and (partner.country_id or partner.parent_id.country_id)
        # Internal extensions stay as they are; external numbers become E.164.
        if country and len(exten.lstrip("+")) >= settings.min_external_number_length:
            exten = self.env["res.partner"]._asterisk_format_e164(exten, country.code) or exten
        record_name = record.display_name if record is not None else exten
        sent = []
        for channel in channels:
            server = channel.server
            call_uid = str(uuid.uuid4())
            other_uid = str(uuid.uuid4())
            pbx_user = channel.asterisk_user
            call = self.env["asterisk_plus.call"]._create_quiet({
                "uniqueid": call_uid,
                "server": server.id,
                "calling_number": pbx_user.exten,
                "calling_name": self.env.user.name,
                "called_number": exten,
                "direction": "out",
                "status": "progress",
                "is_active": True,
                "started": fields.Datetime.now(),
                "calling_user": self.env.uid,
                "partner": partner.id if partner else False,
                "ref": "%s,%s" % (record._name, record.id) if record is not None and record._name in self.env["asterisk_plus.call"]._ref_models() else False,
            })
            chan = self.env["asterisk_plus.channel"].sudo().create({
                "server": server.id,
                "call": call.id,
                "user": self.env.uid,
                "channel": channel.name,
                "channel_short": channel.name,
                "uniqueid": call_uid,
                "linkedid": call_uid,
                "is_primary": True,
                "is_active": True,
                "originated": True,
                "event_time": fields.Datetime.now(),
                "exten": exten,
                "context": channel.originate_context or settings.originate_context,
            })
            action = channel._originate_action(
                exten, call_uid, other_uid, record_name, settings, dtmf=dtmf,
            )
            # The agent forwards the call's first events (Newchannel of this ChannelId) while this
            # request may still be open: the rows must be committed before the job goes out, or
            # the handler cannot see them and trips on the unique Uniqueid. Tests run in one
            # transaction and never commit.
            self._commit_unless_testing()
            try:
                server.local_job(
                    "asterisk.manager_action", args=[action],
                    res_model="asterisk_plus.server", res_method="originate_call_response",
                    pass_back={"channel_id": call_uid, "notify_uid": self.env.uid},
                    job_id=call_uid,
                )
            except UserError:
                # Keep the attempt in the history as failed (contract §9.3), then tell the user.
                chan.write({"is_active": False, "cause_txt": "agent unreachable"})
                call.write({"is_active": False, "status": "failed", "ended": fields.Datetime.now()})
                self._commit_unless_testing()
                raise
            sent.append(call_uid)
        return sent

    def _commit_unless_testing(self):
        if not getattr(threading.current_thread(), "testing", False):
            self.env.cr.commit()

    @api.model
    def _originate_record(self, model, res_id):
        if not model or not res_id:
            return None
        if model not in self.env:
            raise UserError(_("Unknown model %s", model))
        record = self.env[model].browse(int(res_id)).exists()
        if not record:
            return None
        record.check_access_rights("read")
        record.check_access_rule("read")
        return record

    @api.model
    def originate_call_response(self, result, channel_id=None, notify_uid=None, **pass_back):
        """Callback of the Originate job; idempotent (results arrive at least once)."""
        server = self.browse() if self.env.is_superuser() else self._get_agent_server()
        messages = result if isinstance(result, list) else [result]
        error = None
        reason = None
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            if msg.get("Response") in ("Error", "Failure"):
                error = msg.get("Message") or msg.get("Response")
                reason = msg.get("Reason")
        if isinstance(result, dict) and result.get("error"):
            error = result["error"]
        if not error:
            return True
        domain = [("uniqueid", "=", channel_id)] + ([("server", "=", server.id)] if server else [])
        channel = self.env["asterisk_plus.channel"].sudo().search(domain, limit=1) if channel_id else None
        # The map's OriginateResponse handler may have been first: tell the user once.
        applied = channel._originate_failed(reason, error, notify=False) if channel else True
        if applied and notify_uid:
            message = _("Call failed: phone not registered or call declined.") if str(reason) == "0" else _("Call failed: %s", error)
            self.env["asterisk_plus.settings"].sudo().asterisk_plus_notify(message, title=_("PBX"), notify_uid=notify_uid, warning=True)
        return True

    # ------------------------------------------------------ token check
    def _check_security_token(self, token):
        """Constant-time compare against any server's security token."""
        if not token:
            return self.browse()
        for server in self.sudo().search([]):
            if server.security_token and hmac.compare_digest(str(server.security_token).encode(), str(token).encode()):
                return server
        return self.browse()
