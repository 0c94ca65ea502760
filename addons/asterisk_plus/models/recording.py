import base64
import logging
import os
from datetime import timedelta

from odoo import api, fields, models

from .common import agent_event, header, known

_logger = logging.getLogger(__name__)


class Tag(models.Model):
    _name = "asterisk_plus.tag"
    _description = "Recording tag"

    name = fields.Char(required=True)
    recordings = fields.Many2many("asterisk_plus.recording", "asterisk_plus_recording_tag_rel", "tag_id", "recording_id")

    _sql_constraints = [("name_uniq", "unique(name)", "This tag already exists.")]


class Recording(models.Model):
    _name = "asterisk_plus.recording"
    _description = "Call recording"
    _order = "id desc"
    _rec_name = "recording_filename"

    uniqueid = fields.Char(index=True)
    call = fields.Many2one("asterisk_plus.call", ondelete="set null", index=True)
    channel = fields.Many2one("asterisk_plus.channel", ondelete="set null")
    server = fields.Many2one("asterisk_plus.server", ondelete="cascade")
    partner = fields.Many2one("res.partner", ondelete="set null")
    calling_user = fields.Many2one("res.users", ondelete="set null")
    answered_user = fields.Many2one("res.users", ondelete="set null")
    calling_number = fields.Char()
    called_number = fields.Char()
    answered = fields.Datetime()
    duration = fields.Integer()
    file_path = fields.Char(help="Path on the PBX host.")
    recording_filename = fields.Char()
    recording_attachment = fields.Binary(attachment=True)
    recording_data = fields.Binary(attachment=False)
    is_voicemail = fields.Boolean()
    state = fields.Selection([("pending", "On the PBX"), ("stored", "Stored in Odoo"), ("error", "Error")], default="pending")
    tags = fields.Many2many("asterisk_plus.tag", "asterisk_plus_recording_tag_rel", "recording_id", "tag_id")
    keep_forever = fields.Boolean()

    _sql_constraints = [("uniqueid_path_uniq", "unique(uniqueid, file_path)", "This recording is already known.")]

    @api.model
    def _create_from_call(self, call, data):
        existing = self.sudo().search([("uniqueid", "=", data.uniqueid), ("file_path", "=", data.value)], limit=1)
        if existing:
            return existing
        return self.sudo().create({
            "uniqueid": data.uniqueid,
            "call": call.id,
            "channel": data.channel.id,
            "server": call.server.id,
            "partner": call.partner.id,
            "calling_user": call.calling_user.id,
            "answered_user": call.answered_user.id,
            "calling_number": call.calling_number,
            "called_number": call.called_number,
            "answered": call.answered,
            "duration": call.duration,
            "file_path": data.value,
            "recording_filename": os.path.basename(data.value or ""),
        })

    def _fetch_after_commit(self):
        """Queue `recording.get_file` once the handler's transaction is committed."""
        ids = self.filtered(lambda r: r.state == "pending" and r.server).ids
        if not ids:
            return
        dbname = self.env.cr.dbname

        def fetch():
            from odoo.modules.registry import Registry
            with Registry(dbname).cursor() as cr:
                env = api.Environment(cr, api.SUPERUSER_ID, {})
                settings = env["asterisk_plus.settings"].get_settings()
                for rec in env["asterisk_plus.recording"].browse(ids).exists():
                    kwargs = {"file_format": "mp3" if settings.use_mp3_encoder else "wav",
                              "mp3_bitrate": settings.mp3_encoder_bitrate, "mp3_quality": settings.mp3_encoder_quality}
                    try:
                        rec.server.local_job("recording.get_file", args=[rec.file_path], kwargs=kwargs,
                                             res_model="asterisk_plus.recording", res_method="upload_recording",
                                             pass_back={"recording_id": rec.id}, timeout=120)
                    except Exception as e:
                        _logger.warning("asterisk_plus: recording %s not requested: %s", rec.file_path, e)

        self.env.cr.postcommit.add(fetch)

    @api.model
    def upload_recording(self, result, recording_id=None, **pass_back):
        """Callback of `recording.get_file`; idempotent on uniqueid + file_path."""
        server = self.env["asterisk_plus.server"]._get_agent_server()
        rec = self.sudo().browse(recording_id).exists() if recording_id else self.sudo().browse()
        if not rec or rec.server != server:
            return False
        if not isinstance(result, dict) or result.get("error") or not result.get("file_data"):
            rec.state = "error"
            return False
        if rec.state == "stored":
            return True
        settings = self.env["asterisk_plus.settings"].get_settings()
        data = result["file_data"]
        base64.b64decode(data, validate=True)  # reject garbage before storing it
        vals = {"state": "stored", "recording_filename": result.get("file_name") or rec.recording_filename}
        vals["recording_data" if settings.recording_storage == "db" else "recording_attachment"] = data
        rec.write(vals)
        if settings.recording_remove_after_download:
            server._job_after_commit("file.delete", [rec.file_path])
        return True

    @api.model
    def _mvm_data(self, event, key):
        server = self.env["asterisk_plus.server"]._get_agent_server()
        uniqueid = known(header(event, "Uniqueid"))
        value = header(event, "Value")
        if not uniqueid or not value:
            return server, False
        channel = self.env["asterisk_plus.channel"]._agent_channel(server, event)
        self.env["asterisk_plus.channel_data"].sudo().create({
            "channel": channel.id, "call": channel.call.id, "uniqueid": uniqueid, "key": key, "value": value,
        })
        return server, channel

    @api.model
    @agent_event
    def update_mvm_filename(self, event):
        _server, channel = self._mvm_data(event, "minivm_filename")
        return bool(channel)

    @api.model
    @agent_event
    def update_mvm_duration(self, event):
        """The voicemail is complete: create its row and fetch the file."""
        server, channel = self._mvm_data(event, "minivm_duration")
        uniqueid = known(header(event, "Uniqueid"))
        data = self.env["asterisk_plus.channel_data"].sudo().search([
            ("uniqueid", "=", uniqueid), ("key", "=", "minivm_filename"),
        ], order="id desc", limit=1)
        if not data:
            return False
        path = data.value if data.value.endswith(".wav") else data.value + ".wav"
        rec = self.sudo().search([("uniqueid", "=", uniqueid), ("file_path", "=", path)], limit=1)
        if not rec:
            call = channel.call
            try:
                duration = int(float(header(event, "Value")))
            except ValueError:
                duration = 0
            rec = self.sudo().create({
                "uniqueid": uniqueid, "server": server.id, "call": call.id, "channel": channel.id,
                "partner": call.partner.id, "calling_number": call.calling_number,
                "called_number": call.called_number, "duration": duration, "file_path": path,
                "recording_filename": os.path.basename(path), "is_voicemail": True,
            })
            rec._fetch_after_commit()
        return rec.id

    @api.autovacuum
    def _gc_old_recordings(self):
        settings = self.env["asterisk_plus.settings"].get_settings()
        if settings.recordings_keep_days > 0:
            limit = fields.Datetime.now() - timedelta(days=settings.recordings_keep_days)
            self.sudo().search([("create_date", "<", limit), ("keep_forever", "=", False)]).unlink()
